"""HTTPS terminated at gpulab's proxy with the operator's certificate (hub.tls)."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest


@pytest.fixture
def certificate(tmp_path):
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_the_proxy_serves_https_with_the_given_certificate(hub_factory, certificate, monkeypatch):
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate, as a user with a private CA would
    hub = hub_factory.prepare({"hub": {"tls": {"cert_file": str(cert), "key_file": str(key)}}})
    hub.url = hub.url.replace("http://", "https://")
    hub.start()
    with urllib.request.urlopen(hub.url + "hub/login") as response:
        assert response.status == 200 and response.geturl().startswith("https://")
    hub.create_user("tess")
    hub.spawn("tess")
    assert "started" in hub.api.request("GET", "user/tess/api/status")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(hub.url.replace("https://", "http://") + "hub/login", timeout=5)
