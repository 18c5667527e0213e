"""Throw-away certificates shaped like a Qlik Sense certificate export.

Tests, the demo and the benchmarks need the same three-party TLS set-up as a real Qlik Sense
site (a private CA, a server certificate the QRS presents, a client certificate Butler
presents), and no real Qlik export exists on a build machine. The file names match what the
QMC exports (root.pem, server.pem, server_key.pem, client.pem, client_key.pem), so a config
written against the simulator reads like one written against a real site.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID_DAYS = 3650


@dataclass(frozen=True)
class CertPaths:
    """Where the five PEM files of one certificate set live."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> CertPaths:
        return cls(
            ca=folder / "root.pem",
            server_cert=folder / "server.pem",
            server_key=folder / "server_key.pem",
            client_cert=folder / "client.pem",
            client_key=folder / "client_key.pem",
        )

    def all(self) -> tuple[Path, ...]:
        return (self.ca, self.server_cert, self.server_key, self.client_cert, self.client_key)


def generate_certificates(folder: Path) -> CertPaths:
    """Create a CA, a server and a client certificate in ``folder``, or reuse a complete set.

    Reuse keeps repeated test sessions and demo runs fast and lets a user point a browser or
    curl at the same CA between runs. A partial set (an interrupted earlier run) is replaced.
    """
    folder = Path(folder)
    paths = CertPaths.in_folder(folder)
    if all(path.is_file() and path.stat().st_size > 0 for path in paths.all()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)

    ca_key = _new_key()
    ca_name = _name("Butler test CA")
    ca_cert = _sign(
        subject=ca_name,
        public_key=ca_key.public_key(),
        issuer=ca_name,
        issuer_key=ca_key,
        is_ca=True,
    )
    server_key = _new_key()
    server_cert = _sign(
        subject=_name("localhost"),
        public_key=server_key.public_key(),
        issuer=ca_name,
        issuer_key=ca_key,
        is_ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client_key = _new_key()
    client_cert = _sign(
        subject=_name("QlikClient"),
        public_key=client_key.public_key(),
        issuer=ca_name,
        issuer_key=ca_key,
        is_ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )

    _write(paths.ca, _cert_pem(ca_cert))
    _write(paths.server_cert, _cert_pem(server_cert))
    _write(paths.server_key, _key_pem(server_key))
    _write(paths.client_cert, _cert_pem(client_cert))
    _write(paths.client_key, _key_pem(client_key))
    return paths


def _new_key() -> ec.EllipticCurvePrivateKey:
    """P-256 rather than Qlik's RSA: instant to generate and cheap per TLS handshake, so tests
    and benchmarks measure Butler, not key arithmetic."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Butler for Python (testing)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    is_ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    alt_names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename so a concurrent reader never sees half a PEM."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
