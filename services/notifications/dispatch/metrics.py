"""Metrics of dispatch. Labels are channels and outcomes only: never a participant."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.core import metrics as kernel_metrics

DISPATCHED = Counter(
    "tailor_notifications_dispatched_total",
    "Messages by channel and outcome (sent, delivered, undelivered, retried, failed, "
    "cancelled, task, unknown)", ["channel", "outcome"])
DISPATCH_LAG = Histogram(
    "tailor_notifications_dispatch_lag_seconds",
    "Time from a message's due time to its hand-over to the channel", ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400))
BACKLOG = Gauge(
    "tailor_notifications_backlog_messages",
    "Messages due but not yet handed to a channel")
DIARY_ADHERENCE = Gauge(
    "tailor_notifications_diary_adherence_ratio",
    "Diary prompts answered in time / prompts sent, over the last 7 days")
DIARY_SENT = Gauge(
    "tailor_notifications_diary_prompts_sent_ratio",
    "Diary prompts sent / prompts due, over the last 7 days")


def count_outcome(channel: str, outcome: str) -> None:
    DISPATCHED.labels(channel, outcome).inc()


def count_dead_letter(reason: str) -> None:
    kernel_metrics.DEAD_LETTERS.labels("notifications", "dispatcher", reason).inc()
