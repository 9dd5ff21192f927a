-- find_asset: one asset of one company (another company's asset is not found).
SELECT * FROM skiplock.assets WHERE id = %(asset_id)s AND company_id = %(company_id)s
