"""REDCap integration metrics (labels never carry a record id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

API_SECONDS = Histogram(
    "tailor_redcap_api_request_seconds", "REDCap API calls by content, action and outcome",
    ["content", "action", "outcome"])
DET_RECEIVED = Counter(
    "tailor_redcap_det_received_total", "Data Entry Triggers received, by instrument and outcome",
    ["instrument", "outcome"])
SYNC_BACKLOG = Gauge(
    "tailor_redcap_sync_backlog_writes", "Write-backs to REDCap not yet done")
TRIGGER_BACKLOG = Gauge(
    "tailor_redcap_trigger_backlog_triggers", "Triggers stored but not yet fetched and published")
SWEEP_LAG = Gauge(
    "tailor_redcap_sweep_lag_seconds", "Age of the newest change the reconciliation sweep has covered")
RIGHTS_OFFENDERS = Gauge(
    "tailor_redcap_rights_offenders",
    "REDCap users and roles that could see both the allocation and baseline MPI-D "
    "(-1: the last check was refused)")
DET_TO_WRITEBACK = Histogram(
    "tailor_det_to_writeback_seconds",
    "From a Data Entry Trigger's arrival to the allocation written back into REDCap",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
