"""Delivery-status callbacks from an SMS provider: signature check and status mapping.

The provider signs each callback with HMAC-SHA256 over `"<timestamp>." + raw body`, sent as
`X-Signature: v1=<hex>` beside `X-Signature-Timestamp: <unix seconds>`. A timestamp older or
newer than the tolerance is refused, so a captured callback cannot be replayed later; a
callback repeated within the tolerance carries the same `callback_id` and is deduplicated
by the receiver.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from .clock import require_utc
from .delivery import DeliveryState
from .errors import InvalidSignature, NotificationError

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"

PROVIDER_STATUS: dict[str, DeliveryState] = {
    "delivered": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.UNDELIVERED,  # accepted by the provider, then lost: never reached
}


def sign_callback(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_callback(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: datetime,
    tolerance: timedelta = timedelta(minutes=5),
) -> None:
    """Raise InvalidSignature unless the callback is authentic and fresh."""
    try:
        ts = int(timestamp or "")
    except ValueError:
        raise InvalidSignature("missing or malformed timestamp", field=TIMESTAMP_HEADER) from None
    if abs(require_utc(now, "now").timestamp() - ts) > tolerance.total_seconds():
        raise InvalidSignature("timestamp outside the accepted window", field=TIMESTAMP_HEADER)
    if not signature or not hmac.compare_digest(sign_callback(secret, ts, body), signature):
        raise InvalidSignature("signature does not match", field=SIGNATURE_HEADER)


def provider_state(status: str) -> DeliveryState:
    """The delivery state a provider's callback status moves a sent message to."""
    try:
        return PROVIDER_STATUS[status]
    except KeyError:
        raise NotificationError(f"unknown provider status {status!r}", field="status") from None
