"""Mutual TLS between the services: a local CA and per-service certificates, the process's TLS
material, and who a TLS peer is.

Every service listens with TLS and demands a client certificate signed by the mesh's CA; a
service's identity is the URI in its certificate's subject alternative names,
``spiffe://bud/<name>`` (`app`, `engine`, `gateway`, `operator`, ...). Authorisation by identity
is `auth.service_identity`'s job; this module only establishes who is calling.

Where the material comes from (:func:`process_tls`):

- **files** (production: Kubernetes secrets mounted as files, cert-manager, a service mesh's
  CA): `tls_ca_file`, `tls_cert_file`, `tls_key_file`; the identity is read from the certificate;
- **the local CA** (`budrt up`, `budrt serve` without files): generated once with `cryptography`
  into ``<data_dir>/tls/`` (directory 0700, keys 0600): ``ca.pem``/``ca.key`` and
  ``<name>.pem``/``<name>.key`` per identity, the operator's for grpcurl included. A process
  uses the certificate of its identity (`budrt serve` sets it: the first component it runs).

With `tls` off a server listens in plaintext, which :func:`check_plaintext_listen` allows on a
loopback address only, unless `insecure` says otherwise (logged at WARNING on every start).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from budrt.settings import RuntimeSettings, SettingsError, private_dir, settings

log = logging.getLogger(__name__)

TRUST_DOMAIN = "bud"
IDENTITY_PREFIX = f"spiffe://{TRUST_DOMAIN}/"
# The identity of a person's tools (grpcurl): management RPCs only.
OPERATOR = "operator"
# The directory of the local CA under the data dir.
TLS_DIR = "tls"

_CA_DAYS = 3650
_LEAF_DAYS = 825
# A generated leaf certificate this close to its end is issued again at the next start.
_RENEW_BEFORE = datetime.timedelta(days=30)


class InsecureListenError(SettingsError):
    """A service was asked to listen in plaintext on an address other machines can reach."""


def identity_uri(name: str) -> str:
    """The certificate URI naming service identity `name`."""
    return IDENTITY_PREFIX + name


def identity_of_uri(uri: str) -> str | None:
    """The identity an URI names, or None when it is not one of ours."""
    if uri.startswith(IDENTITY_PREFIX) and len(uri) > len(IDENTITY_PREFIX):
        return uri[len(IDENTITY_PREFIX) :]
    return None


def identity_of_certificate(cert_pem: bytes) -> str | None:
    """The service identity in a certificate's subject alternative names (its first
    ``spiffe://bud/...`` URI), or None."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in names.get_values_for_type(x509.UniformResourceIdentifier):
        identity = identity_of_uri(uri)
        if identity:
            return identity
    return None


def peer_identity(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The identity of a gRPC peer from its `context.auth_context()`: the ``spiffe://bud/...``
    URI of its verified client certificate; None for a peer without one (plaintext, or a
    certificate naming no identity)."""
    for key in ("peer_spiffe_id", "peer_uri", "x509_subject_alternative_name"):
        for value in auth_context.get(key, ()):
            identity = identity_of_uri(value.decode(errors="replace"))
            if identity:
                return identity
    return None


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """One process's TLS material: the CA it trusts, its certificate and key, and the identity
    the certificate names. Servers demand a client certificate from that CA; channels present
    this certificate."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = b""
    identity: str = ""
    # The name to verify servers' certificates against instead of the dialled host (an address
    # by IP whose certificate names a DNS name only).
    server_name: str = ""

    @classmethod
    def from_files(cls, ca: Path, cert: Path, key: Path, server_name: str = "") -> TlsMaterial:
        """Material read from PEM files; the identity is the certificate's."""
        cert_pem = cert.read_bytes()
        identity = identity_of_certificate(cert_pem)
        if identity is None:
            raise SettingsError(f"{cert}: the certificate names no {IDENTITY_PREFIX}<service> URI")
        return cls(ca.read_bytes(), cert_pem, key.read_bytes(), identity, server_name)

    def server_credentials(self) -> grpc.ServerCredentials:
        """TLS for a server that refuses the handshake of a client without a certificate from
        the CA."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """TLS for a client: verify the server against the CA, present this certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Channel options TLS needs (the target name override when one is set)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Writes `data` to `path` atomically, the file created with `mode` (never wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask cannot widen it, but an old tmp file could be wider
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class LocalCa:
    """The CA `budrt up` generates into ``<data_dir>/tls/`` and the certificates it signs.

    Everything is generated once and kept; a leaf close to its end is issued again. Generation
    holds a lock file, so processes starting together agree on one CA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def of(cls, conf: RuntimeSettings) -> LocalCa:
        """The local CA under `conf`'s data dir."""
        return cls(conf.data_dir / TLS_DIR)

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def cert(self, name: str) -> Path:
        """The certificate of identity `name`."""
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        """The private key of identity `name`."""
        return self.directory / f"{name}.key"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.directory)
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_ca(self) -> None:
        if self.ca_cert.exists() and self.ca_key.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bud Runtime local CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key, _key_pem(key), 0o600)
        _write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("generated the local CA of the mesh", extra={"path": str(self.ca_cert)})

    def _current(self, name: str) -> bool:
        """Whether identity `name` has a certificate from this CA, not close to its end."""
        if not (self.cert(name).exists() and self.key(name).exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.cert(name).read_bytes())
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        fresh = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > _RENEW_BEFORE
        return fresh and cert.issuer == ca.subject

    def issue(self, names: Iterable[str], hosts: Iterable[str] = ()) -> None:
        """Creates the CA if needed, then a certificate for every identity in `names` that has
        none (or an old one): SANs DNS `localhost`, IPs 127.0.0.1 and ::1, `hosts`, and the
        identity URI; usable as server and as client."""
        with self._locked():
            self._ensure_ca()
            for name in names:
                if not self._current(name):
                    self._issue(name, hosts)

    def _issue(self, name: str, hosts: Iterable[str]) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names = list(dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [*(_san_entry(h) for h in names), x509.UniformResourceIdentifier(identity_uri(name))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        _write_private(self.key(name), _key_pem(key), 0o600)
        _write_private(self.cert(name), cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("issued a service certificate", extra={"identity": name, "path": str(self.cert(name))})

    def material(self, name: str, hosts: Iterable[str] = ()) -> TlsMaterial:
        """The TLS material of identity `name` (issued first when missing)."""
        self.issue([name], hosts)
        return TlsMaterial(
            self.ca_cert.read_bytes(), self.cert(name).read_bytes(), self.key(name).read_bytes(), name
        )


def address_host(address: str) -> str:
    """The host part of a gRPC address (``host:port``, ``[v6]:port``, ``dns:host:port``)."""
    if address.startswith("dns:"):
        address = address[4:].lstrip("/")
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if ":" in address else address


def is_loopback(address: str) -> bool:
    """Whether only this machine can reach `address` (a loopback IP, `localhost`, a unix socket);
    the wildcard addresses (0.0.0.0, ::) are not."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def certificate_hosts(conf: RuntimeSettings) -> list[str]:
    """The names a generated certificate is valid for besides localhost: this machine's name and
    the hosts of the configured service addresses (wildcards left out)."""
    hosts = [socket.gethostname()]
    for address in (conf.app_address, conf.engine_address, conf.gateway_grpc_address):
        host = address_host(address)
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                continue
        if host:
            hosts.append(host)
    return hosts


# What budrt serve chose for this process: the identity whose generated certificate it uses.
_identity = OPERATOR
_UNSET: Any = object()
_material: Any = _UNSET


def set_process_identity(name: str) -> None:
    """The identity this process takes from the local CA (`budrt serve`: its first component;
    anything else, such as a script, is the operator). No effect when files are configured."""
    global _identity, _material
    _identity = name
    _material = _UNSET


def configure(material: TlsMaterial | None) -> None:
    """Sets this process's TLS material (None: plaintext), instead of reading the settings
    (a host embedding services, and tests)."""
    global _material
    _material = material


def reset() -> None:
    """Forgets configured or loaded material: the next :func:`process_tls` reads the settings."""
    global _material
    _material = _UNSET


def material_from_settings(conf: RuntimeSettings, identity: str = "") -> TlsMaterial | None:
    """The TLS material `conf` asks for: None with `tls` off, the three files when set, else the
    local CA's certificate of `identity`."""
    if not conf.tls:
        return None
    files = (conf.tls_ca_file, conf.tls_cert_file, conf.tls_key_file)
    if any(files):
        if not all(files):
            raise SettingsError("tls_ca_file, tls_cert_file and tls_key_file are set together or not at all")
        return TlsMaterial.from_files(*files, server_name=conf.tls_server_name)  # type: ignore[arg-type]
    material = LocalCa.of(conf).material(identity or _identity, certificate_hosts(conf))
    return dataclasses.replace(material, server_name=conf.tls_server_name)


def process_tls() -> TlsMaterial | None:
    """This process's TLS material (read once from the runtime settings), None when TLS is off."""
    global _material
    if _material is _UNSET:
        _material = material_from_settings(settings())
    return _material


def process_identity() -> str:
    """The service identity of this process (what in-process calls count as)."""
    material = process_tls()
    return material.identity if material is not None else _identity


def check_plaintext_listen(address: str, conf: RuntimeSettings | None = None) -> None:
    """Raises InsecureListenError when a plaintext server would listen on `address` that other
    machines can reach and `insecure` is not set."""
    conf = conf or settings()
    if is_loopback(address) or conf.insecure:
        return
    raise InsecureListenError(
        f"refusing to listen without TLS on {address}, which other machines can reach: "
        "turn TLS on (BUD_TLS=true, the default; with BUD_TLS_CA_FILE/BUD_TLS_CERT_FILE/"
        "BUD_TLS_KEY_FILE in production), listen on a loopback address, or set BUD_INSECURE=true "
        "to accept unauthenticated callers"
    )


def warn_if_insecure(conf: RuntimeSettings) -> None:
    """Logs, at every start, that the services run without TLS when they do."""
    if not conf.tls:
        log.warning(
            "TLS between services is OFF: any caller that reaches a gRPC port is trusted"
            + (" (insecure=true: also on non-loopback addresses)" if conf.insecure else ""),
            extra={"tls": False, "insecure": conf.insecure},
        )
    elif conf.insecure:
        log.warning("insecure=true has no effect while tls is on", extra={"tls": True, "insecure": True})
