"""A verified client certificate's subject reaches the app, over real TLS sockets.

A bare Flask app stands in for Butler's: what is tested is what the server puts in the
environ, before any Butler code runs.
"""

import ssl

import pytest
import requests
from flask import Flask, request

from butler.client_cert import (
    CLIENT_SUBJECT_KEY,
    ClientSubject,
    client_subjects_supported,
    subject_from_peercert,
)
from butler.server import TlsFiles
from butler.testing.certs import generate_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The CA the server trusts, its server certificate and one client certificate."""
    return generate_certificates(tmp_path_factory.mktemp("client-ca"))


@pytest.fixture(scope="module")
def strangers(tmp_path_factory):
    """A client certificate from a second CA the server does not trust."""
    return generate_certificates(tmp_path_factory.mktemp("other-ca"))


def environ_app():
    app = Flask("environ-probe")
    app.config.update(
        MAX_CONTENT_LENGTH=1 << 20,
        BUTLER_READ_TIMEOUT=5.0,
        BUTLER_MAX_CONNECTIONS_PER_CLIENT=20,
        BUTLER_WORKERS=4,
    )

    @app.get("/subject")
    def subject():
        seen = request.environ.get(CLIENT_SUBJECT_KEY)
        if seen is None:
            return {"subject": None}
        assert isinstance(seen, ClientSubject)
        return {"subject": {"dn": seen.dn, "cn": seen.cn}}

    return app


def serve(live_server, certs, require=False):
    tls = TlsFiles(certs.server_cert, certs.server_key, certs.ca, require_client_cert=require)
    return live_server(environ_app(), tls=tls) + "/subject"


def client_of(paths):
    return (str(paths.client_cert), str(paths.client_key))


TEST_CLIENT = {"dn": "CN=QlikClient,O=Butler for Python (testing)", "cn": "QlikClient"}


@pytest.mark.servers("waitress")
def test_without_a_certificate_there_is_no_subject(live_server, certs):
    url = serve(live_server, certs)
    response = requests.get(url, verify=str(certs.ca), timeout=5)
    assert response.json() == {"subject": None}


@pytest.mark.servers("waitress")
def test_a_verified_certificate_names_its_subject(live_server, certs):
    url = serve(live_server, certs)
    with requests.Session() as session:
        for _ in range(3):  # every request of a kept-alive connection
            response = session.get(url, verify=str(certs.ca), cert=client_of(certs), timeout=5)
            assert response.json() == {"subject": TEST_CLIENT}


@pytest.mark.servers("waitress")
def test_a_required_certificate_names_its_subject(live_server, certs):
    url = serve(live_server, certs, require=True)
    response = requests.get(url, verify=str(certs.ca), cert=client_of(certs), timeout=5)
    assert response.json() == {"subject": TEST_CLIENT}


@pytest.mark.servers("waitress")
def test_headers_cannot_forge_a_subject(live_server, certs):
    url = serve(live_server, certs)
    forged = {
        "SSL-Client-S-DN": "CN=admin",
        "SSL_CLIENT_S_DN_CN": "admin",
        "X-Client-Subject": "CN=admin",
        "Butler.client-subject": "CN=admin",
    }
    response = requests.get(url, verify=str(certs.ca), headers=forged, timeout=5)
    assert response.json() == {"subject": None}
    response = requests.get(
        url, verify=str(certs.ca), cert=client_of(certs), headers=forged, timeout=5
    )
    assert response.json() == {"subject": TEST_CLIENT}


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(live_server, certs, strangers):
    url = serve(live_server, certs)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(certs.ca), cert=client_of(strangers), timeout=5)
    # The server still serves the next caller.
    assert requests.get(url, verify=str(certs.ca), cert=client_of(certs), timeout=5).ok


@pytest.mark.servers("granian")
def test_granian_verifies_but_does_not_tell_the_app(live_server, certs):
    """What client_subjects_supported("granian") is False for: no TLS details in the environ."""
    url = serve(live_server, certs)
    response = requests.get(url, verify=str(certs.ca), cert=client_of(certs), timeout=5)
    assert response.json() == {"subject": None}
    assert not client_subjects_supported("granian")


def test_only_cheroot_supports_client_subjects():
    assert client_subjects_supported("waitress")
    assert not client_subjects_supported("granian")


def test_subject_from_a_real_peercert(certs):
    """The dict getpeercert() gives for the test client certificate, read by ssl itself."""
    decoded = ssl._ssl._test_decode_cert(str(certs.client_cert))
    assert subject_from_peercert(decoded) == ClientSubject(**TEST_CLIENT)


@pytest.mark.parametrize("peercert", [None, {}, {"subject": ()}])
def test_no_verified_certificate_means_no_subject(peercert):
    assert subject_from_peercert(peercert) is None


def test_dn_is_rfc_4514_most_specific_first_and_escaped():
    peercert = {
        "subject": (
            (("countryName", "SE"),),
            (("organizationName", "Example, Inc."),),
            (("organizationalUnitName", "Ops"), ("organizationalUnitName", "Qlik+Sense")),
            (("commonName", " alice#1 "),),
            (("emailAddress", "alice@example.com"),),
        )
    }
    subject = subject_from_peercert(peercert)
    assert subject == ClientSubject(
        dn="emailAddress=alice@example.com,CN=\\ alice#1\\ ,OU=Ops+OU=Qlik\\+Sense,"
        "O=Example\\, Inc.,C=SE",
        cn=" alice#1 ",
    )


def test_a_subject_without_a_common_name():
    subject = subject_from_peercert({"subject": ((("organizationName", "Example"),),)})
    assert subject == ClientSubject(dn="O=Example", cn=None)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        (" ", "\\ "),
        ("a\\ ", "a\\\\\\ "),
        ("#x#", "\\#x#"),
        ("a\x00b", "a\\00b"),
        ('<"a">;', '\\<\\"a\\"\\>\\;'),
    ],
)
def test_value_escaping(value, escaped):
    subject = subject_from_peercert({"subject": ((("commonName", value),),)})
    assert subject == ClientSubject(dn=f"CN={escaped}", cn=value)
