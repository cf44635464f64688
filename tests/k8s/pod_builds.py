"""Build a user pod's manifest the way a hub would, without a cluster or a hub.

`stock_pod` runs stock KubeSpawner as configured by a `Config` (the operator's
`c.KubeSpawner.*`, profile_list included): `load_user_options()` then `get_pod_manifest()`.
`gpulab_pod` runs gpulab's spawner on the traitlets config `apply_config` makes from
gpulab settings, plus the operator's hand-set `c.KubeSpawner.*` (what jupyterhub_config.d
adds): the choice is resolved as at admission (`plan_spawn`), then the same two calls.

The user and hub are plain objects with what the spawners read; the cluster watch is
replaced by `Nodes` (GPU products and drivers come from node labels). Building a pod does
no I/O, but KubeSpawner loads a kubeconfig when it is made: `offline(monkeypatch)` skips that.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from traitlets.config import Config

from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.hand_set import merge_hand_set_environment, owned_settings_set_by_hand
from tests.support.settings import typed_settings
from gpulab.spawner.backends.kubernetes import spawner as kubernetes
from gpulab.spawner.hub_shared import shared_values
from gpulab.spawner.backends.kubernetes.spawner import ClusterSnapshot, GpulabKubeSpawner


def offline(monkeypatch) -> None:
    """Make KubeSpawner without loading a kubeconfig (its API client is never used here)."""
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **settings: None)


def user(name: str = "ada", groups: tuple[str, ...] = (), admin: bool = False):
    return SimpleNamespace(name=name, id=1, url=f"/user/{name}/", admin=admin, spawners={},
                           groups=[SimpleNamespace(name=g) for g in groups])


def record(server: str):
    """What the spawner reads of its row in the hub's database (its name: `{servername}`)."""
    return SimpleNamespace(name=server, server=None, user_options={})


class Nodes:
    """Stands in for the cluster watch: a fixed list of nodes and no pods."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes

    async def ready(self):
        return self

    def snapshot(self) -> ClusterSnapshot:
        return ClusterSnapshot([], set(), {}, tuple(self.nodes), ())


async def manifest(pod) -> dict:
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


async def stock_pod(config: Config, user_options: dict, owner=None, server: str = "") -> dict:
    spawner = KubeSpawner(config=copy.deepcopy(config), user=owner or user(), orm_spawner=record(server),
                          _mock=True)
    spawner.user_options = user_options
    await spawner.load_user_options()
    return await manifest(await spawner.get_pod_manifest())


def gpulab_config(values: dict, hand_set: Config | None = None) -> Config:
    """The hub's config for a gpulab.yaml of `values` on the kubernetes backend."""
    c = apply_config(typed_settings(values, Path("/"), spawner={"backend": "kubernetes"}), Config())
    if hand_set is not None:
        c.merge(copy.deepcopy(hand_set))
    # what jupyterhub_config.py does after loading jupyterhub_config.d
    merge_hand_set_environment(c)
    assert owned_settings_set_by_hand(c) == [], "the hub would refuse to start"
    return c


def gpulab_spawner(config: Config, nodes: list[dict], owner=None, server: str = "") -> GpulabKubeSpawner:
    spawner = GpulabKubeSpawner(config=config, user=owner or user(), orm_spawner=record(server), _mock=True)
    shared_values(spawner)[kubernetes.CLUSTER_KEY] = Nodes(nodes)  # the stand-in for the hub's watch
    return spawner


async def spawn_manifest(spawner: GpulabKubeSpawner, user_options: dict) -> dict:
    """The pod of one spawn with `user_options` (a refused choice raises tornado's HTTPError)."""
    spawner.user_options = user_options
    spawner.spawn_plan = spawner.plan_spawn(user_options)
    await spawner.load_user_options()
    return await manifest(await spawner.get_pod_manifest())


async def gpulab_pod(values: dict, user_options: dict, nodes: Sequence[dict] = (), hand_set: Config | None = None,
                     owner=None, server: str = "") -> dict:
    spawner = gpulab_spawner(gpulab_config(values, hand_set), list(nodes), owner, server)
    return await spawn_manifest(spawner, user_options)
