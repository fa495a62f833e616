"""Who is at the other end of the connection, for rate limits.

`X-Forwarded-For` is believed only when the connection comes from a proxy named in the
`trusted_proxies` setting (addresses or networks); then the right-most address that is not
itself a trusted proxy is the client. From anyone else the header is ignored: otherwise a
caller would pick a fresh address per request and never meet a per-address limit. (The
server itself must not rewrite the client address: `services.core.runner.serve` turns
uvicorn's proxy headers off so this is the one place that decides.)
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.datastructures import Headers
from starlette.types import Scope

Network = IPv4Network | IPv6Network
CLIENT = "client_address"  # where the guard leaves the address in scope["state"]


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ip_network(e.strip(), strict=False) for e in entries if e.strip())


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted or not _trusted(peer, trusted):
        return peer
    forwarded = Headers(scope=scope).getlist("x-forwarded-for")
    hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer  # a garbled hop: limit the proxy's own address instead
    return peer
