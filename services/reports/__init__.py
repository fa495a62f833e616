"""Reports service: a read model built only from the bus — the CONSORT flow, the pilot's
feasibility verdicts (Wilson 95% CIs), recruitment progress, retention, acceptability and
safety counts — rebuilt from the stream's start on demand (`tailor reports rebuild`).

`services.reports.domain` holds the pure rules; `projection` applies events to the read
model; `api` serves the figures as JSON, CSV and SVG, shaped by the caller's role.
"""
