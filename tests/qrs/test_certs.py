"""Test certificates: Qlik export file names, a proper chain, reuse of an existing set."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from butler.testing.certs import CertPaths, generate_certificates


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_files_use_qlik_export_names(qrs_certs: CertPaths) -> None:
    names = sorted(path.name for path in qrs_certs.all())
    assert names == ["client.pem", "client_key.pem", "root.pem", "server.pem", "server_key.pem"]
    assert all(path.parent == qrs_certs.ca.parent for path in qrs_certs.all())
    assert b"PRIVATE KEY" in qrs_certs.client_key.read_bytes()
    assert b"PRIVATE KEY" not in qrs_certs.client_cert.read_bytes()


def test_server_and_client_are_signed_by_the_ca(qrs_certs: CertPaths) -> None:
    ca = load(qrs_certs.ca)
    server = load(qrs_certs.server_cert)
    client = load(qrs_certs.client_cert)
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_existing_set_is_reused(qrs_certs: CertPaths) -> None:
    before = [path.read_bytes() for path in qrs_certs.all()]
    again = generate_certificates(qrs_certs.ca.parent)
    assert again == qrs_certs
    assert [path.read_bytes() for path in again.all()] == before


def test_partial_set_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "root.pem").write_text("stale")
    paths = generate_certificates(folder)
    load(paths.ca).public_key()
    load(paths.server_cert).verify_directly_issued_by(load(paths.ca))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
