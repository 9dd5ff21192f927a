DROP TABLE skiplock.asset_uploads;
DROP TABLE skiplock.asset_chunks;
