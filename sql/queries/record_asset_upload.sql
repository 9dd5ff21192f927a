-- record_asset_upload: note an output about to be stored, before its upload starts, so that
-- if its asset row never commits (the job was canceled or taken back, the worker died) a
-- worker can find the object and remove it. finish_jobs deletes the row with the asset's.
INSERT INTO skiplock.asset_uploads (provider, object_key, job_id, attempt, worker_id)
VALUES (%(provider)s, %(object_key)s, %(job_id)s, %(attempt)s, %(worker_id)s)
