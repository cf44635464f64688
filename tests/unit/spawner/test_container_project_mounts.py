"""The docker backend's share of project folders, without an engine: the mounts a pre-spawn hook
adds reach the next container once, and the projects hook leaves spawners alone that do not run
servers as the user's account on this machine. The real containers, groups and ACLs are in
tests/hub/extensions/projects/test_container_projects.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gpulab.compute.limits import Limits
from gpulab.extensions.projects.service_settings import StorageSettings
from gpulab.extensions.projects.spawn_hook import ProjectFolders
from gpulab.spawner.backends.docker.spawner import GpulabDockerSpawner, container_settings
from gpulab.spawner.backends.local.spawner import LocalSpawner


def test_an_added_mount_is_kept_once_and_mounted_read_write_at_the_same_path():
    spawner = GpulabDockerSpawner(mounts=["/data/shared"])
    spawner.add_mount("/srv/gpulab/projects")
    spawner.add_mount("/srv/gpulab/projects")
    assert spawner.added_mounts == ["/srv/gpulab/projects"]
    assert spawner.mounts == ["/data/shared"]  # the operator's setting is not changed
    settings = container_settings(image="i", limits=Limits(), devices=[], gpu_request="nvidia", uid=1201, gid=1201,
                                  groups=[1201, 1401], home="/home/gpulab-alice",
                                  mounts=[*spawner.mounts, *spawner.added_mounts])
    assert settings["volumes"] == {path: {"bind": path, "mode": "rw"} for path in
                                   ("/home/gpulab-alice", "/data/shared", "/srv/gpulab/projects")}
    assert settings["extra_host_config"]["group_add"] == ["1401"]


def test_the_projects_hook_skips_other_spawners_and_backends_without_reading_projects():
    settings = {"backend": "kubernetes", "root": "", "group_prefix": "gpulab-p-", "account_prefix": "gpulab-",
                "home_root": "", "data_dir": ""}
    hook = ProjectFolders("sqlite:////nonexistent/folder/projects.sqlite", StorageSettings.of(settings))
    other = SimpleNamespace(user=SimpleNamespace(name="alice", groups=[]))  # e.g. KubeSpawner
    for spawner, backend in ((other, "local"), (other, "docker"), (GpulabDockerSpawner(), "kubernetes"),
                             (LocalSpawner(), "kubernetes")):
        hook.storage_settings = StorageSettings.of({**settings, "backend": backend})
        assert asyncio.run(hook(spawner)) is None
    assert hook._store is None  # returned before opening the projects' database
