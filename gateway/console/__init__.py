"""The web console: server-rendered pages for the people who run a trial, served by the
gateway under `/console/`. Every figure on a page comes from a public API route called
with the signed-in person's own credential, so the permission table, blinding, rate
limits and the audit of participant reads apply exactly as they do to the API."""
