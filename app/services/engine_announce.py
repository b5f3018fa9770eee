"""AnnounceEngine: an engine registers itself, and renews its lease, with its own certificate.

Who may call it is the service-identity policy's job (`auth.service_identity`: the `engine`
identity only). What an engine may announce is this module's: **only an address its certificate
names** — the announced host must be one of the certificate's DNS names (a wildcard covers one
leftmost label, as TLS hostname checks do, RFC 6125) or IP addresses. So an engine credential
cannot point the control plane (and the gateways) at an arbitrary host of the network: only at
names the CA issued to engines. In the Helm chart the engine certificate names
``*.<engine group's headless service>`` (and its namespace forms), so each pod announces
``<pod>.<service>:<port>``, its stable DNS name. Engines that share one certificate can announce
each other's names: at worst one keeps another's lease alive (a dead engine stays placeable
until the real one's lease would have ended had it been alone) — it cannot add an address
outside the engines' names. Per-pod certificates (a CSI driver, SPIFFE) would narrow that.

An announcement is idempotent by address: the engine registered there (by an admin, the
configured engine, or an earlier announcement) keeps its id and name; its capacity is the
announced one and its lease starts again. A new address is registered under the announced name
(or one derived from the address); a name another address holds is ALREADY_EXISTS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from app import ids
from app.db import models
from app.db.session import Database
from app.services.common import conflicts_as
from app.validation import ENGINE_NAME_RE, check_engine
from bud.app.v1 import engine_registry_pb2 as pb
from budrt.errors import Reason, already_exists, permission_denied
from budrt.tls import address_host

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> tuple[list[str], list[IpAddress]]:
    """The DNS names and IP addresses of a TLS peer's verified certificate (grpc's auth context:
    ``peer_dns``, ``peer_ip``); empty for a peer without one (plaintext, in process)."""
    dns = [v.decode(errors="replace") for v in auth_context.get("peer_dns", ())]
    ips = []
    for value in auth_context.get("peer_ip", ()):
        try:
            ips.append(ipaddress.ip_address(value.decode(errors="replace")))
        except ValueError:
            continue
    return dns, ips


def _dns_matches(pattern: str, host: str) -> bool:
    """Hostname matching as TLS does it (RFC 6125 6.4): case-insensitive, a trailing dot ignored,
    a wildcard only as the whole leftmost label, standing for exactly one non-empty label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == host
    suffix = pattern[2:]
    if not suffix or "*" in suffix:
        return False
    label, _, rest = host.partition(".")
    return bool(label) and rest == suffix


def host_in_certificate(host: str, dns: Sequence[str], ips: Sequence[IpAddress]) -> bool:
    """Whether an announced host is one the certificate names (an IP against its IP addresses,
    a DNS name against its DNS names)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return any(_dns_matches(name, host) for name in dns)
    return ip in ips


def derived_name(address: str) -> str:
    """An engine's name when it announces none: its host's first DNS label (the pod's name), or
    the address when the host is an IP."""
    host = address_host(address)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        label = host.split(".", 1)[0]
        if ENGINE_NAME_RE.match(label):
            return label
    return address[:100]


def check_announcer(address: str, auth_context: Mapping[str, Sequence[bytes]]) -> None:
    """PERMISSION_DENIED unless the caller's certificate names the announced address's host."""
    dns, ips = certificate_names(auth_context)
    if not host_in_certificate(address_host(address), dns, ips):
        raise permission_denied(
            "an engine may only announce an address its certificate names "
            "(a DNS name or IP address among its subject alternative names)",
            reason=Reason.SERVICE_NOT_ALLOWED,
            param="engine.address",
        )


async def announce(
    db: Database, engine: pb.Engine, lease: timedelta, now: datetime
) -> tuple[models.Engine, bool]:
    """Registers the engine or renews its record (by address); returns the row and whether it is
    new. The caller has checked the certificate (`check_announcer`)."""
    name = engine.name or derived_name(engine.address)
    announced = pb.Engine(name=name, address=engine.address, max_models=engine.max_models)
    check_engine(announced)

    def conflict(err: object) -> Exception:
        return already_exists(
            "an engine with this name or address is already registered", param="engine.name"
        )

    with conflicts_as(conflict):
        async with db.transaction() as session:
            row = await session.scalar(
                select(models.Engine).where(models.Engine.address == engine.address).with_for_update()
            )
            created = row is None
            if row is None:
                if await session.scalar(select(models.Engine.id).where(models.Engine.name == name)):
                    raise already_exists(
                        "an engine with this name is already registered at another address",
                        param="engine.name",
                    )
                row = models.Engine(
                    id=ids.new_id(ids.ENGINE), name=name, address=engine.address, create_time=now
                )
                session.add(row)
            row.max_models = engine.max_models
            row.last_seen = now
            row.lease_expire_time = now + lease
            await session.flush()
            session.expunge(row)
    return row, created
