"""A server that cannot start fails the spawn at once, with its own words, not after a timeout."""

from __future__ import annotations

import pytest

from gpulab.hub_config.client import ClientError


@pytest.fixture
def broken_environment(homes_root):
    """A Python environment whose jupyterhub-singleuser exits at once with a message."""
    env = homes_root / "broken-env"
    (env / "bin").mkdir(parents=True, exist_ok=True)
    script = env / "bin" / "jupyterhub-singleuser"
    script.write_text("#!/bin/sh\necho 'ImportError: no module named jupyterlab (demo)' >&2\nexit 3\n")
    script.chmod(0o755)
    env.chmod(0o755)
    (env / "bin").chmod(0o755)
    return env


def test_a_server_that_exits_while_starting_fails_the_spawn_with_its_output(hub_factory, broken_environment):
    hub = hub_factory.start({"spawner": {"local": {"python": str(broken_environment)}}})
    hub.create_user("unlucky")
    with pytest.raises(ClientError) as failed:
        hub.spawn("unlucky", timeout=60)
    message = failed.value.message
    assert "exited with status 3 while starting" in message
    assert "ImportError: no module named jupyterlab (demo)" in message
    assert hub.server_model("unlucky") is None


def test_an_environment_without_jupyterhub_is_named_in_the_error(hub_factory, homes_root):
    empty = homes_root / "empty-env"
    (empty / "bin").mkdir(parents=True, exist_ok=True)
    hub = hub_factory.start({"spawner": {"local": {"python": str(empty)}}})
    hub.create_user("unlucky2")
    with pytest.raises(ClientError) as failed:
        hub.spawn("unlucky2", timeout=60)
    assert f"{empty}/bin has no jupyterhub-singleuser" in failed.value.message
