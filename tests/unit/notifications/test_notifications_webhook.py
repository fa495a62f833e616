"""Signed provider callbacks: authenticity, freshness and status mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.domain import (
    DeliveryState,
    InvalidSignature,
    NotificationError,
    provider_state,
    sign_callback,
    verify_callback,
)

SECRET = b"s3cret"
NOW = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = b'{"id":"sms_1","status":"delivered"}'


def test_valid_signature_passes():
    verify_callback(SECRET, str(TS), BODY, sign_callback(SECRET, TS, BODY), NOW)


@pytest.mark.parametrize(("secret", "ts", "body", "sig_ts", "field"), [
    (b"other", str(TS), BODY, TS, "X-Signature"),
    (SECRET, str(TS), BODY + b" ", TS, "X-Signature"),
    (SECRET, str(TS + 1), BODY, TS, "X-Signature"),
    (SECRET, str(TS - 301), BODY, TS - 301, "X-Signature-Timestamp"),
    (SECRET, None, BODY, TS, "X-Signature-Timestamp"),
    (SECRET, "yesterday", BODY, TS, "X-Signature-Timestamp"),
])
def test_tampered_stale_or_unsigned_callbacks_are_refused(
        secret: bytes, ts: str | None, body: bytes, sig_ts: int, field: str):
    sig = sign_callback(secret, sig_ts, BODY)
    with pytest.raises(InvalidSignature) as err:
        verify_callback(SECRET, ts, body, sig, NOW)
    assert err.value.field == field


def test_missing_signature_is_refused():
    with pytest.raises(InvalidSignature):
        verify_callback(SECRET, str(TS), BODY, None, NOW, tolerance=timedelta(minutes=1))


def test_provider_statuses_map_to_delivery_states():
    assert provider_state("delivered") is DeliveryState.DELIVERED
    assert provider_state("failed") is DeliveryState.UNDELIVERED
    with pytest.raises(NotificationError) as err:
        provider_state("queued")
    assert err.value.field == "status"
