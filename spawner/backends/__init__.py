"""The compute backends: where servers and scheduled runs execute (see protocol.py).

Each backend is one folder here whose `backend` module declares `BACKEND` (a `ComputeBackend`). Adding
one: write the folder (a Spawner for servers, an Executor for runs, the `BACKEND` tying them and
its `configure` step), name it below and in the schema's `spawner.backend` enum (a unit test
keeps the two equal).
"""

from __future__ import annotations

import importlib

from .protocol import ComputeBackend

# name in gpulab.yaml -> the module declaring BACKEND (imported only when chosen: the
# Kubernetes client costs every local start 0.3 s)
BACKENDS = {
    "local": "gpulab.spawner.backends.local.backend",
    "docker": "gpulab.spawner.backends.docker.backend",
    "kubernetes": "gpulab.spawner.backends.kubernetes.backend",
}


def backend(name: str) -> ComputeBackend:
    """The backend `spawner.backend` names."""
    if name not in BACKENDS:
        raise ValueError(f"unknown compute backend {name!r}; known: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name]).BACKEND
