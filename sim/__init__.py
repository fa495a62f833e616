"""Stand-ins for the outside world (REDCap, a synthetic cohort, an SMTP sink) for demos and tests."""
