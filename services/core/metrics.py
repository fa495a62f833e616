"""Prometheus metrics of the kernel. Names start with `tailor_` and carry their unit.

Labels are bounded and never carry a participant identifier, arm or cluster.
Metrics are process-global (prometheus-client's default registry); `service` tells
processes apart when several services share one process (tests).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "tailor_http_requests_total", "HTTP requests by route template and status class",
    ["service", "method", "route", "status"])
HTTP_SECONDS = Histogram(
    "tailor_http_request_duration_seconds", "HTTP request duration by route template",
    ["service", "method", "route"])
CONSUMER_MESSAGES = Counter(
    "tailor_consumer_messages_total", "Bus messages handled, by consumer and outcome (ack/nak/term)",
    ["service", "consumer", "outcome"])
CONSUMER_SECONDS = Histogram(
    "tailor_consumer_handle_duration_seconds", "Time to handle one bus message",
    ["service", "consumer"])
BUS_PUBLISH_SECONDS = Histogram(
    "tailor_bus_publish_duration_seconds", "Time from publish to JetStream acknowledgement",
    ["service"])
OUTBOX_BACKLOG = Gauge(
    "tailor_outbox_backlog_messages", "Outbox rows not yet acknowledged by JetStream",
    ["service"])
DEAD_LETTERS = Counter(
    "tailor_bus_dead_letters_total", "Messages moved to the dead-letter stream",
    ["service", "consumer", "reason"])
CONSUMER_REFUSED = Counter(
    "tailor_consumer_refused_total",
    "Events refused before handling (e.g. a producer that does not own the subject)",
    ["service", "consumer", "reason"])
DUPLICATES = Counter(
    "tailor_consumer_duplicates_total", "Redelivered or duplicated events skipped by the inbox",
    ["service", "consumer"])
AUDIT_LENGTH = Gauge(
    "tailor_audit_chain_length_entries", "Length of the service's audit chain at its last beacon",
    ["service"])
