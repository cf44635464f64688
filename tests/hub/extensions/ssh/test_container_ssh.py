"""SSH into a server that runs in a container (the docker backend), with stock OpenSSH clients:
the same gateway and the same in-server endpoint as for a process server, the endpoint here
running inside the `cpu` image built from the committed Dockerfiles.

Checked: a command runs inside the container (tini is its first process, the image's Python),
as the user's own account, in their bind-mounted home; stdin arrives whole and the exit status
comes back; a file copied in with sftp lands in the home on the host, owned by that account.

Not covered: a GPU (none here), Docker Engine itself (Podman serves the same API).
"""

from __future__ import annotations

import os
import pwd

import pytest

from gpulab.hub_config.client import HubClient
from gpulab.spawner.accounts import account_name
from tests.support.ssh import OpenSSH, known_hosts, make_key


pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def hub(module_hub_factory, container_engine):
    hub = module_hub_factory.start({
        "spawner": {"backend": "docker", "docker": {"host": container_engine.url}},
        "profiles": [{"id": "small", "display_name": "Small CPU", "default": True}],
        "mlflow": {"enabled": False},  # not under test here
    })
    hub.create_user("cora")
    return hub


@pytest.fixture(scope="module")
def cora(hub, tmp_path_factory) -> OpenSSH:
    key = make_key(tmp_path_factory.mktemp("keys"), "cora")
    HubClient(hub.url, hub.user_token("cora")).request(
        "POST", "services/ssh/api/keys", {"public_key": key.with_suffix(".pub").read_text()})
    hub.spawn("cora", timeout=180)
    port = hub.ports["ssh"]
    return OpenSSH(port, known_hosts(hub, port, tmp_path_factory.mktemp("known")), key)


def test_a_command_runs_inside_the_container_as_the_users_account(hub, cora, account_prefix, homes_root):
    entry = pwd.getpwnam(account_name("cora", account_prefix))
    result = cora.ssh("cora", "cat /proc/1/comm; id -u; id -g; pwd; command -v python; "
                              "test -e /run/.containerenv && echo in-a-container; wc -c; exit 5",
                      input=b"y" * 200_000)
    assert result.returncode == 5, result.stderr.decode(errors="replace")
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "tini"
    assert lines[1:3] == [str(entry.pw_uid), str(entry.pw_gid)]
    assert lines[3] == str(homes_root / entry.pw_name)
    assert lines[4].startswith("/opt/gpulab/env/")  # the image's environment, not the hub's
    assert lines[5:] == ["in-a-container", "200000"]


def test_sftp_puts_a_file_into_the_home_on_the_host(hub, cora, account_prefix, homes_root, tmp_path):
    entry = pwd.getpwnam(account_name("cora", account_prefix))
    local = tmp_path / "weights.bin"
    local.write_bytes(os.urandom(300_000))
    result = cora.sftp("cora", f"put {local} weights.bin\n")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    landed = homes_root / entry.pw_name / "weights.bin"
    assert landed.read_bytes() == local.read_bytes()
    assert (landed.stat().st_uid, landed.stat().st_gid) == (entry.pw_uid, entry.pw_gid)
