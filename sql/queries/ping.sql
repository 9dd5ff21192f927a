-- ping: the cheapest round trip, for /healthz.
SELECT 1
