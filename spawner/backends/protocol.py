"""What the dispatcher asks of an executor, whichever backend runs the runner.

The dispatcher claims compute (gpulab.compute.claims) from the executor's pool, then hands
the executor a `RunRequest`; the executor turns it into its own plan (a local process, a
Kubernetes Job), decides what device environment the runner needs, and answers with a
reference of its own type, which it alone formats and parses (stored in Run.executor_ref).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from gpulab.compute.claims import Claim, Pool
from gpulab.compute.profiles import Profile
from gpulab.images.catalog import Environment

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
