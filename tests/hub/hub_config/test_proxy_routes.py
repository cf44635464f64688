"""Routes through traefik: a route is ready when traefik leads it to its target (hub_config/proxy.py)."""

from __future__ import annotations

from tests.support.probes import answers

# traefik applying route changes half a second apart (its providersThrottleDuration, which an admin
# may set through jupyterhub_config.d): as a traefik busy with many changes, slow to apply the next
SLOW_TRAEFIK = 'c.TraefikFileProviderProxy.traefik_providers_throttle_duration = "0.5s"\n'


def test_a_server_started_again_at_once_is_ready_only_when_the_proxy_leads_to_it(hub_factory):
    """A server stopped and started again before traefik applied the stop has a route of the same
    name in traefik that still leads to the old, stopped server's port. The hub must say ready only
    once traefik leads to the new one: the first request after the spawn returns is answered, not
    a 502. Five rounds, each stop and start back to back through the REST API (the SSH gateway's
    restart of a server did this in CI while traefik's changes were throttled)."""
    hub = hub_factory.prepare()
    (hub.workdir / "jupyterhub_config.d" / "10-slow-traefik.py").write_text(SLOW_TRAEFIK)
    hub.start()
    hub.create_user("rita")
    hub.spawn("rita")
    url = hub.url + "user/rita/api/status"
    for round_ in range(5):
        hub.api.request("DELETE", "hub/api/users/rita/server")  # answered once the server stopped
        hub.spawn("rita")
        assert answers(url), f"round {round_}: the server was reported ready before the proxy led to it"
