"""What a compute backend is: a server spawner for the hub and an executor for scheduled runs.

A backend lives in one folder, spawner/backends/<name>/, whose package declares `BACKEND`, an
object implementing `ComputeBackend`, and is named in spawner/backends/__init__.py (the value of
`spawner.backend` in gpulab.yaml). The hub loads its `spawner_class` and applies its
`configure` step; the scheduler service builds its executor with `executor(RunServices)`.

What the dispatcher asks of an executor, whichever backend runs the runner:

The dispatcher claims compute (gpulab.compute.claims) from the executor's pool, then hands
the executor a `RunRequest`; the executor turns it into its own plan (a local process, a
Kubernetes Job), decides what device environment the runner needs, and answers with a
reference of its own type, which it alone formats and parses (stored in Run.executor_ref).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, TypeVar

from traitlets.config import Config

from gpulab.compute.claims import Claim, Pool
from gpulab.compute.profiles import Profile
from gpulab.images.catalog import Environment

if TYPE_CHECKING:  # typed settings (pydantic) only where a hub is configured; SQLAlchemy only for types
    from sqlalchemy.orm import sessionmaker

    from gpulab.extensions.scheduler.service_settings import SchedulerServiceSettings
    from gpulab.hub_config.typed_settings import Settings

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class RunRequest:
    """One run to start, with what was claimed for it."""

    run_id: str
    owner: str
    profile: Profile
    environment: Environment
    env: dict  # the runner's variables: its URL and token, MLflow's
    claim: Claim | None  # its GPUs (None: a CPU profile); devices are () where the cluster assigns them
    log_path: Path
    timeout_seconds: int
    nodes: int = 1  # pods of a multi-node job (a cluster's executor only)
    # KubeSpawner overrides of the chosen profile options, in order, after the profile's own
    # (a cluster's executor only: on one machine they change nothing, as for a server)
    overrides: tuple[dict, ...] = ()
    # For a notebook: the kernel and folder it runs in, which a standby for the owner's next
    # run starts with (warm.hint_of; executors without standbys ignore it)
    warm_hint: dict = field(default_factory=dict)


class Executor(Protocol[Ref]):
    @property
    def pool(self) -> Pool:
        """Where runs' GPUs come from."""
    on_exit: Callable[[], None]  # called (from any thread) when a runner ends, so the end is noticed at once
    homes_here: bool  # runs start in the owner's home on this machine (the service may read notebooks there)

    async def prepare(self) -> None:
        """Before the first run: find the runners started before a restart."""

    async def admit(self, profile: Profile, nodes: int) -> str | None:
        """Why a run of `nodes` pods of `profile` should wait although its claim was granted (None:
        start it). A cluster gangs a multi-node job: all its pods fit now, or none is made."""

    async def start(self, request: RunRequest) -> Ref:
        """Start the run's runner; the reference finds it again, after a restart too."""

    def parse_ref(self, text: str) -> Ref:
        """The reference `str(ref)` wrote into the database."""

    def exit_code(self, ref: Ref) -> int | None:
        """None while the runner runs; its exit code after (-1: it ended unseen)."""

    def stop(self, run_id: str, ref: Ref) -> None:
        """Stop the runner and what it started (called from a worker thread)."""

    def cleanup(self, run_id: str, ref: Ref | None = None, ended: str = "") -> None:
        """After the run ended (`ended`: its status): what it leaves behind (`ref`: its runner, where
        it had one)."""

    def picked_up(self, run_id: str) -> None:
        """The run's runner fetched its spec (the run began)."""

    def lost_before_start(self, run_id: str, ref: Ref) -> bool:
        """Whether the runner that ended was handed the run but ended before fetching its spec
        (a standby killed at the hand-over): the run never began and may start again."""

    def driver(self) -> str | None:
        """The newest NVIDIA driver runs can get: environments needing more cannot run."""

    def python_exists(self, python: str) -> bool:
        """Whether an environment's Python is there to run (images on Kubernetes always are)."""


@dataclass(frozen=True)
class RunServices:
    """What the scheduler service hands a backend to build its executor."""

    settings: SchedulerServiceSettings  # the scheduler service's settings
    log: logging.Logger
    sessions: sessionmaker  # the scheduler's database sessions (the GPU ledger's claims live there)
    run_log: Callable[[str], Path]  # a run's log file, by run id
    state_dir: Path  # the scheduler's own folder (standby runners keep their logs there)
    roles_of: Callable[[str], Awaitable[dict]]  # a user's project roles (a cluster labels Jobs by them)
    launcher: Any = None  # who starts runners as their owners (machine-local backends; None on a cluster)


class ComputeBackend(Protocol):
    name: str  # `spawner.backend` in gpulab.yaml
    spawner_class: str  # the Spawner JupyterHub loads for servers (its import path)
    # Servers and runs are this machine's processes or containers: its system accounts and homes,
    # its GPUs through the ledger. False: a cluster's (accounts, homes and GPUs are the cluster's).
    machine_local: bool

    def configure(self, s: Settings, c: Config) -> None:
        """Set this backend's own hub settings (its spawner's traits) from gpulab.yaml."""

    def executor(self, services: RunServices) -> Executor:
        """The executor the scheduler runs notebooks with on this backend."""
