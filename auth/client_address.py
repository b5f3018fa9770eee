"""The network address a call comes from, for per-address policy (the login throttle).

It is the gRPC peer's host. A REST call reaches the app through a gateway, whose address would
stand for every client behind it, so the gateway forwards its HTTP client's address as
``x-forwarded-for`` metadata (`gateway.transcoder`), and that value is used instead — but only
when the peer is trusted to say it: an in-process call (a co-hosted gateway) or a loopback peer (a
gateway on the same host). Anyone else's ``x-forwarded-for`` is ignored.

Limits, by choice: any process on the app's host may claim an address this way; a gateway on
another host is not trusted, so all the REST clients behind it share its address (as do the
clients behind one NAT or proxy in front of a gateway, unless that proxy makes uvicorn see the
real client).
"""

from __future__ import annotations

import ipaddress
from typing import Any

FORWARDED_FOR = "x-forwarded-for"
# A peer in the same process (`budrt.inprocess.LocalContext.peer()`).
IN_PROCESS_PEER = "local"
_MAX_LENGTH = 64


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:/p``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]") if rest.startswith("[") else rest
    return peer


def _trusted(peer: str) -> bool:
    if peer == IN_PROCESS_PEER or peer.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(peer_host(peer)).is_loopback
    except ValueError:
        return False


def client_address(context: Any) -> str:
    """The calling client's address: the forwarded one from a trusted peer, else the peer's
    host (`context` is a gRPC servicer context or anything with ``peer()`` and
    ``invocation_metadata()``)."""
    peer = str(context.peer() or "")
    if _trusted(peer):
        forwarded = [
            str(value) for key, value in (context.invocation_metadata() or ()) if key == FORWARDED_FOR
        ]
        if forwarded and 0 < len(forwarded[-1].strip()) <= _MAX_LENGTH:
            return forwarded[-1].strip()
    return peer_host(peer)
