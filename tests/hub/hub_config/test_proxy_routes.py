"""Routes through traefik: a route is ready when traefik leads it to its target (hub_config/proxy.py)."""

from __future__ import annotations

from tests.support.probes import answers


def test_a_server_started_again_at_once_is_ready_only_when_the_proxy_leads_to_it(hub_factory):
    """traefik applies a burst of route changes together (providersThrottleDuration 0.5 s), so a
    server stopped and started again within it has a route of the same name in traefik that still
    leads to the old, stopped server's port. The hub must say ready only once traefik leads to the
    new one: the first request after the spawn returns is answered, not a 502. Five rounds, each
    stop and start back to back through the REST API (the SSH gateway's restart did this in CI)."""
    hub = hub_factory.start()
    hub.create_user("rita")
    hub.spawn("rita")
    url = hub.url + "user/rita/api/status"
    for round_ in range(5):
        hub.api.request("DELETE", "hub/api/users/rita/server")  # answered once the server stopped
        hub.spawn("rita")
        assert answers(url), f"round {round_}: the server was reported ready before the proxy led to it"
