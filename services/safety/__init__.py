"""Safety service: adverse events and SAEs, reporting clocks, negative-effects screening
(NEQ, INEP), blinded and DSMB reports, E2B(R3)-structured case export.

`services.safety.domain` holds the pure rules (no I/O); the service layer stores cases
and obligations, consumes `form_saved` / `allocated` and serves the API.
"""
