"""REDCap integration of the gateway: Data Entry Trigger receiver, re-fetch through the API,
write-back of results, reconciliation sweep. The gateway is the only holder of the token."""
