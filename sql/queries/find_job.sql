-- find_job: one job of one company (another company's job is not found).
SELECT * FROM skiplock.content_jobs WHERE id = %(job_id)s AND company_id = %(company_id)s
