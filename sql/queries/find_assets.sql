-- find_assets: which of these asset ids have a row (after a retried completion whose first
-- commit may have landed, so the worker keeps those files).
SELECT id FROM skiplock.assets WHERE id = ANY (%(asset_ids)s::uuid[])
