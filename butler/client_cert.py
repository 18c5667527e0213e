"""Who a TLS caller is, by the client certificate it presented, as the app sees it.

The server puts a :class:`ClientSubject` in the WSGI environ under ``CLIENT_SUBJECT_KEY``
only after the certificate chained to the configured client CA in the TLS handshake (a
certificate that does not is refused there, so the app never runs for it). The subject is
taken from the connection's own SSL socket, never from anything the request carries: an
``SSL_CLIENT_*`` header arrives as ``HTTP_SSL_CLIENT_*`` and a header name cannot hold the
dotted key, so a caller cannot forge it.

Only cheroot (``server: waitress`` with TLS) can do this. granian 2.8 verifies client
certificates in rustls but hands its WSGI callback no TLS details at all (no peer
certificate, no subject, no verification result), so with granian a certificate can gate
the connection but never name the caller: :func:`client_subjects_supported` says so, and
the config refuses certificate callers on granian.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLIENT_SUBJECT_KEY = "butler.client_subject"

_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "domainComponent": "DC",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "userId": "UID",
}
"""RFC 4514's attribute type names, by the names Python's ssl module reports them under."""


@dataclass(frozen=True)
class ClientSubject:
    """A verified client certificate's subject.

    ``dn`` is the RFC 4514 string: the most specific part first (``CN=alice,O=Example``),
    the reverse of the order inside the certificate, as LDAP tools and OpenSSL's
    ``-nameopt RFC2253`` print it. ``cn`` is the most specific common name, or None.
    """

    dn: str
    cn: str | None


def _escape(value: str) -> str:
    """RFC 4514 section 2.4: the characters a DN string must escape in a value."""
    chars = [
        "\\00" if char == "\x00" else f"\\{char}" if char in ',+"\\<>;' else char for char in value
    ]
    if chars and chars[0] in (" ", "#"):
        chars[0] = "\\" + chars[0]
    if chars and chars[-1] == " ":
        chars[-1] = "\\ "
    return "".join(chars)


def subject_from_peercert(peercert: Mapping[str, Any] | None) -> ClientSubject | None:
    """The subject of ``ssl.SSLSocket.getpeercert()``'s answer; None when there is none.

    ``getpeercert()`` answers None when no certificate was presented and ``{}`` when one
    was presented but not verified (a context that does not verify): neither names a
    caller.
    """
    if not peercert:
        return None
    rdns = peercert.get("subject") or ()
    if not rdns:
        return None
    parts = []
    common_name = None
    for rdn in rdns:  # least specific first, as stored in the certificate
        parts.append(
            "+".join(f"{_SHORT_NAMES.get(kind, kind)}={_escape(value)}" for kind, value in rdn)
        )
        for kind, value in rdn:
            if kind == "commonName":
                common_name = value
    return ClientSubject(dn=",".join(reversed(parts)), cn=common_name)


def client_subjects_supported(server: str) -> bool:
    """Whether ``restServerConfig.server`` can tell the app a TLS caller's certificate."""
    return server == "waitress"
