-- forget_asset_upload: the object of this record is gone (never stored, or removed): drop it.
DELETE FROM skiplock.asset_uploads
WHERE provider = %(provider)s AND object_key = %(object_key)s
