"""A hub restart (issue 16): the hub routes itself and the running servers first, then starts
its managed services together (hub_config/hub_app.py); every service still answers and every
server is kept. A service that fails to start is named and blocks neither the hub nor the
others. No timing is asserted here: benchmarks/stop_restart.py measures the restart.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from tests.support.hub import ADMIN_TOKEN, wait_for


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 to the hub's OAuth page is an answer from the service


def status_through_proxy(url: str) -> int:
    """The status the service or server at `url` answers with through the proxy (0: none)."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {ADMIN_TOKEN}"})
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def listening_services(hub) -> list[str]:
    """The names of the hub's services that listen (have a URL), from the hub's REST API."""
    return sorted(name for name, model in hub.api.request("GET", "hub/api/services").items() if model.get("url"))


def test_after_a_restart_every_service_answers_and_every_server_is_kept(hub_factory):
    hub = hub_factory.start()
    names = ["rosa", "remy"]
    for name in names:
        hub.create_user(name)
        hub.spawn(name)
    services = listening_services(hub)
    assert {"mlflow", "projects", "scheduler", "ssh"} <= set(services), services

    hub.restart()  # returns once the hub logs "JupyterHub is now running"

    log = hub.log_path.read_text(errors="replace")
    assert "Routing the hub and 2 running servers before the services start" in log
    started_together = next(line for line in log.splitlines() if "services together:" in line)
    for name in services:
        assert name in started_together, started_together
        assert f"Service {name} answers" in log
    assert "did not start" not in log
    # the hub's route was added before the first service was started, not after the last answered
    assert log.index("Adding route for Hub") < log.index("Starting service ")
    for name in services:
        assert 0 < status_through_proxy(f"{hub.url}services/{name}/") < 500, name
    for name in names:
        assert hub.server_model(name)["ready"]
        assert status_through_proxy(f"{hub.url}user/{name}/api/status") == 200, name


BROKEN_SERVICE = """
c.JupyterHub.services.append({{
    "name": "broken",
    "command": [{python!r}, "-c", "import sys; sys.exit(3)"],
    "url": "http://127.0.0.1:{port}",
}})
"""


def test_a_service_that_fails_to_start_is_named_and_blocks_neither_the_hub_nor_the_others(hub_factory):
    hub = hub_factory.prepare()
    (hub.workdir / "jupyterhub_config.d" / "50-broken.py").write_text(
        BROKEN_SERVICE.format(python=sys.executable, port=hub.ports["hub"] + 8))
    hub.start()  # stock JupyterHub would exit here: a managed service that exits while starting is fatal

    log = hub.log_path.read_text(errors="replace")
    assert "Service broken exited with status 3" in log
    assert "Service broken did not start (see above); the hub and the other services go on without it" in log
    others = [name for name in listening_services(hub) if name != "broken"]
    assert others
    for name in others:
        assert f"Service {name} answers" in log
        assert 0 < status_through_proxy(f"{hub.url}services/{name}/") < 500, name
    # the hub keeps serving, and the service watch keeps trying the broken service again
    hub.create_user("bo")
    hub.spawn("bo")
    wait_for(lambda: hub.log_path.read_text(errors="replace").count("Starting service 'broken'") >= 3, 30,
             "the service watch to start the broken service again")
    assert hub.process.poll() is None
