"""Webhooks reach public addresses only (unless an admin allows a network), and connect to
the very address that was checked. Real sockets and a real HTTP server; name resolution is
passed in, so a name can answer differently on a second lookup (DNS rebinding)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gpulab.extensions.scheduler.webhooks import allowed_networks, check, post
from gpulab.hub_config.services.errors import Invalid


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1:8080/x", "loopback"),
    ("http://[::1]/x", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.10/", "private"),
    ("http://[fd00:ec2::254]/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "not public"),
    ("http://localhost:8888/", "loopback"),
])
def test_internal_addresses_are_refused_naming_the_address(url, kind):
    with pytest.raises(Invalid, match=f"a {kind}") as refused:
        check(url, ())
    assert "webhook_allowed_networks" in refused.value.message


def test_every_address_of_a_name_is_checked_and_public_ones_pass():
    def two(host, port):
        return ["93.184.215.14", "10.0.0.7"]

    with pytest.raises(Invalid, match="10.0.0.7, a private address"):
        check("https://hooks.example.com/x", (), two)
    assert check("https://hooks.example.com/x", (), lambda h, p: ["93.184.215.14"]) == \
        ("hooks.example.com", 443, ["93.184.215.14"])
    with pytest.raises(Invalid, match="cannot resolve"):
        check("http://no-such-host.invalid/", ())


def test_an_admin_allows_networks_and_bad_entries_are_named():
    assert check("http://10.20.3.4:9000/", allowed_networks(["10.20.0.0/16"]))[2] == ["10.20.3.4"]
    with pytest.raises(Invalid):
        check("http://10.21.3.4:9000/", allowed_networks(["10.20.0.0/16"]))
    with pytest.raises(ValueError, match="'300.1.1.1' is not an IP network"):
        allowed_networks(["300.1.1.1"])


class Received(BaseHTTPRequestHandler):
    hosts: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Received.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_request_goes_to_the_checked_address_not_to_a_second_lookup():
    server = HTTPServer(("127.0.0.1", 0), Received)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answers = [["127.0.0.1"], ["169.254.169.254"]]  # a rebinding name: the second lookup points elsewhere
    lookups = []

    def rebinding(host, port):
        lookups.append(host)
        return answers[len(lookups) - 1]

    try:
        status = post(f"http://hook.test:{server.server_port}/in", b"{}", allowed_networks(["127.0.0.1/32"]), 5,
                      rebinding)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 204 and lookups == ["hook.test"]  # one lookup, and that address was used
    assert Received.hosts == [f"hook.test:{server.server_port}"]


def test_sending_checks_again():
    with pytest.raises(Invalid, match="loopback"):
        post("http://127.0.0.1:9/x", b"{}", (), 5)
