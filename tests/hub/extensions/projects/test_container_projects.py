"""Project folders on the docker backend, end to end: a real hub, Podman's Docker API, servers in
containers of the `cpu` image (the `container_engine` fixture), real system accounts and ACLs.

Checked: before the container starts, the projects hook gives a member's account the project's
groups and the `~/projects/<name>` link, and the container gets those groups and the projects
root at the same path, so a member's kernel writes through the link a file that another member's
kernel (and the other member's account on the host) reads and edits, while the kernel of someone
who is not a member (but has a project of her own, so the root is mounted in her container too)
has no link and cannot open the file by its path: access is the host account's groups and ACLs.

The projects service makes the folders and groups on this backend as on the local one (its
root helper), so everything here goes through the hub and the service.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gpulab.extensions.projects.storage.local import LocalStorage
from gpulab.extensions.projects.storage.system_groups import gid_of
from tests.support.hub import wait_for
from tests.support.kernels import Kernel, KernelError
from tests.support.projects import account, create_project, project_settings


pytestmark = pytest.mark.root

PROFILES = [{"id": "small", "display_name": "Small CPU", "default": True, "memory": {"limit": "1Gi"}}]
SLUG = "vision"
MEMBERS = {"ann": "maintainer", "ben": "editor"}


@pytest.fixture(scope="module")
def hub(module_hub_factory, container_engine, projects_root, account_prefix):
    return module_hub_factory.start({
        **project_settings(projects_root, account_prefix, "dk"),
        "spawner": {"backend": "docker", "docker": {"host": container_engine.url}},
        "profiles": PROFILES,
        "environments": {"offer": ["cpu"], "default": "cpu"},  # the image the test session builds
    })


def storage(hub) -> LocalStorage:
    local = hub.settings["projects"]["local"]
    return LocalStorage(Path(local["root"]), local["group_prefix"], hub.settings["spawner"]["local"]["account_prefix"],
                        hub.settings["spawner"]["local"]["home_root"])


@pytest.fixture(scope="module")
def project(hub):
    """The project in the projects service (members and roles); the service makes its folder and
    groups (the members' accounts get their groups at spawn)."""
    hub.create_user("ann")
    hub.create_user("ben")
    create_project(hub, "ann", SLUG, {"ben": MEMBERS["ben"]})
    return wait_for(lambda: storage(hub).folder(SLUG).is_dir() and storage(hub).folder(SLUG), 30,
                    "the service to make the project's folder")


def as_account(hub, user: str, *command: str) -> subprocess.CompletedProcess:
    """A fresh process of the user's account on the host, with the groups /etc/group gives it now."""
    entry = account(hub, user)
    return subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
                           *command], capture_output=True, text=True)


WHO = "import json, os; print(json.dumps({'uid': os.getuid(), 'groups': os.getgroups(), " \
      "'links': sorted(os.listdir('projects')) if os.path.isdir('projects') else []}))"


def test_members_containers_share_the_project_folder_and_a_non_member_s_cannot_read_it(hub, project,
                                                                                       container_engine):
    # cara is not a member of "vision" but has a project of her own: her container has the
    # projects root mounted too, and only her account's groups and the gates keep her out
    hub.create_user("cara")
    create_project(hub, "cara", "other", {})
    wait_for(lambda: storage(hub).folder("other").is_dir(), 30, "the service to make cara's project's folder")
    kernels = {}
    for name in ("ann", "ben", "cara"):
        hub.spawn(name, timeout=180)
        kernels[name] = Kernel(hub.url, name, hub.user_token(name))
    rw_gid = gid_of(f"{hub.settings['projects']['local']['group_prefix']}{SLUG}-rw")

    # the members' containers run with the project's group and see the link; cara's neither
    seen = {name: json.loads(kernel.run(WHO, timeout=120).strip().splitlines()[-1]) for name, kernel in kernels.items()}
    for name in ("ann", "ben"):
        assert seen[name]["uid"] == account(hub, name).pw_uid
        assert rw_gid in seen[name]["groups"] and seen[name]["links"] == [SLUG], seen[name]
    assert rw_gid not in seen["cara"]["groups"] and seen["cara"]["links"] == ["other"]
    engine = container_engine.client()
    root = str(project.parent.parent)
    for name in ("ann", "ben", "cara"):
        binds = engine.containers.get(f"gpulab-{account(hub, name).pw_name}").attrs["HostConfig"]["Binds"]
        assert any(bind.startswith(f"{root}:{root}:") for bind in binds), binds
    engine.close()

    # ann writes through ~/projects/vision in her container; the file is hers on the host
    kernels["ann"].run(f"open('projects/{SLUG}/from-ann.txt', 'w').write('hello from ann\\n')")
    on_disk = project / "from-ann.txt"
    assert on_disk.read_text() == "hello from ann\n"
    assert on_disk.stat().st_uid == account(hub, "ann").pw_uid and on_disk.stat().st_gid == rw_gid

    # ben reads it in his container and on the host as his account, and may edit it (editor)
    assert kernels["ben"].run(f"print(open('projects/{SLUG}/from-ann.txt').read(), end='')") == "hello from ann\n"
    assert as_account(hub, "ben", "cat", str(on_disk)).stdout == "hello from ann\n"
    kernels["ben"].run(f"open('projects/{SLUG}/from-ann.txt', 'a').write('and ben\\n')")
    assert on_disk.read_text() == "hello from ann\nand ben\n"

    # cara's account passes no gate of "vision": she cannot open the file by its path, nor list the
    # project or the projects root
    for code in (f"open({str(on_disk)!r}).read()", f"os.listdir({str(project)!r})",
                 f"os.listdir({root!r})"):
        with pytest.raises(KernelError, match="PermissionError"):
            kernels["cara"].run(f"import os; {code}")
    assert as_account(hub, "cara", "cat", str(on_disk)).returncode != 0

    for name, kernel in kernels.items():
        kernel.shutdown()
        hub.stop_server(name)


def test_the_projects_service_makes_the_folder_on_the_docker_backend(hub):
    hub.create_user("dan")
    create_project(hub, "dan", "made-by-service", {})
    wait_for(lambda: storage(hub).folder("made-by-service").is_dir(), 30, "the service to make the folder")
