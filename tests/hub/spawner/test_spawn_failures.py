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


@pytest.fixture
def venv_linking_into_a_private_folder(homes_root, tmp_path):
    """An environment others can enter whose interpreter is a link into a private folder, like a
    venv made from a Python under /root (issue 15 item 11: each spawn was a 500, Permission denied)."""
    private = homes_root / "private-python"
    private.mkdir(mode=0o700, exist_ok=True)
    private.chmod(0o700)
    (private / "python3").symlink_to("/usr/bin/python3")
    env = homes_root / "linked-env"
    (env / "bin").mkdir(parents=True, exist_ok=True)
    (env / "bin" / "python").symlink_to(private / "python3")
    script = env / "bin" / "jupyterhub-singleuser"
    script.write_text(f"#!{env}/bin/python\nprint('never runs')\n")
    script.chmod(0o755)
    return env, private


def test_servers_nobody_could_run_are_named_before_the_hub_starts(venv_linking_into_a_private_folder, tmp_path):
    import subprocess
    import sys

    from gpulab.spawner.backends.local.spawner import unrunnable_server

    env, private = venv_linking_into_a_private_folder
    program, blocked = unrunnable_server(env / "bin", 65534, [65534])
    assert (program, blocked) == (private / "python3", private)
    settings = tmp_path / "gpulab.yaml"
    settings.write_text(f"spawner:\n  local:\n    python: {env}\nhub:\n  data_dir: {tmp_path / 'data'}\n")
    up = subprocess.run([sys.executable, "-m", "gpulab.hub_config.cli", "up", "--config", str(settings)],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 1
    assert f"cannot run {private / 'python3'}: {private} is not open to other users" in up.stderr
    assert "spawner.local.python" in up.stderr
