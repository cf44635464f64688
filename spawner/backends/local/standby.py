"""Standby runners on this machine (the warm path, issue 16): the scheduler's side.

After a run of an owner ends, the local executor starts a standby for that owner: a runner
started exactly as a run's (the same launcher, account, cgroup limits, environment's Python,
private kernel sockets, CUDA_VISIBLE_DEVICES="" as a CPU run), which imports Papermill and
starts a kernel (warm.py), then waits for a run with one long request to
`runner/standby/ID/next`. The dispatcher's next run of the same owner with the same
environment and limits is handed to it: the run's variables (its URL and token, made at
hand-over, MLflow's) are the answer, the standby's log file becomes the run's log.txt, and the
run's reference is the standby's process (HandedRef: pid, start ticks and the standby's id).

What is never handed to a standby and starts cold: a run of another owner, environment or
CPU/memory limits, a GPU run (its devices are set before its kernel starts), a run in a
container (the docker backend). The standby itself starts a kernel of the run's own when the
run's kernel name or working directory is not the one its kernel has.

Bounds: at most one standby per (owner, environment, limits), at most `max_standbys` in all,
each stopping after `idle_seconds` without a run; a standby runs one run and is never reused.
A standby whose process ends before it fetched its run's spec (killed) gives the run back to
the queue, which starts it cold. A standby's processes carry GPULAB_RUN_URL ending in its id,
as a run's carry the run's, so the launcher's stop and clean-up (and its checks) treat a
standby like a run of that id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gpulab.compute.limits import Limits
from gpulab.compute.processes import ProcessRef

from gpulab.spawner.backends.local.runner_process import RunnerLaunch

MAX_STANDBYS = 4
IDLE_SECONDS = 600.0
TOKEN_PLACEHOLDER = "-" * len(secrets.token_urlsafe(32))  # a run's token (dispatcher._start) is this long


@dataclass(frozen=True)
class StandbyKey:
    """What a run and a standby must share: the owner, the environment's Python, the limits."""

    owner: str
    python: str
    limits: Limits


@dataclass(frozen=True)
class HandedRef(ProcessRef):
    """A run's runner that started as standby `standby`; stored as "pid:ticks@standby"."""

    standby: str = ""

    def __str__(self) -> str:
        return f"{self.pid}:{self.start_ticks}@{self.standby}"

    @property
    def process(self) -> ProcessRef:
        return ProcessRef(self.pid, self.start_ticks)


def parse_ref(text: str) -> ProcessRef:
    """A local run's reference: "pid:ticks", or "pid:ticks@standby" for a run handed to a standby."""
    process, _, standby = text.partition("@")
    ref = ProcessRef.parse(process)
    return HandedRef(ref.pid, ref.start_ticks, standby) if standby else ref


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Standby:
    id: str
    key: StandbyKey
    token_hash: str
    log_path: Path
    ref: ProcessRef | None = None  # once its process started
    waiting: asyncio.Future | None = None  # its request for a run, while it waits (idle and warm)
    run_id: str = ""  # the run handed to it


@dataclass
class Standbys:
    """The standbys of this scheduler process, and the runs recently handed to them."""

    runner_url: str
    folder: Path  # the standbys' log files (each becomes its run's log.txt)
    max_standbys: int = MAX_STANDBYS
    idle_seconds: float = IDLE_SECONDS
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("gpulab.scheduler"))
    by_id: dict[str, Standby] = field(default_factory=dict)
    handed: dict[str, str] = field(default_factory=dict)  # run id -> standby id, until the spec is fetched

    # ------------------------------------------------------------ choosing (pure)

    def key_for(self, launch: RunnerLaunch, gpus: bool, nodes: int) -> StandbyKey | None:
        """The standby a run may be handed to, or None: it starts cold."""
        if gpus or launch.image or nodes != 1 or launch.env.get("CUDA_VISIBLE_DEVICES", "") != "":
            return None
        return StandbyKey(launch.owner, launch.python, launch.limits)

    def idle(self, key: StandbyKey) -> Standby | None:
        """A warm standby of `key` waiting for a run."""
        for standby in self.by_id.values():
            if standby.key == key and standby.waiting is not None and not standby.waiting.done() \
                    and standby.ref is not None and standby.ref.running() and not standby.run_id:
                return standby
        return None

    def wanted(self, key: StandbyKey) -> bool:
        """Whether to start a standby of `key` (after a run of its owner): none of it yet, room left."""
        if any(standby.key == key and not standby.run_id for standby in self.by_id.values()):
            return False
        return len([s for s in self.by_id.values() if not s.run_id]) < self.max_standbys

    # ------------------------------------------------------------ life

    def new(self, key: StandbyKey, hint: dict) -> tuple[Standby, RunnerLaunch]:
        """A standby to start (registered now, so no second one of its key starts meanwhile)."""
        standby_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        standby = Standby(standby_id, key, digest(token), self.folder / f"{standby_id}.log")
        self.by_id[standby_id] = standby
        # Its processes carry the marks of a run (runner_process.carries_run) with its own id, of the
        # length of a run's, so that at hand-over it writes the run's over them (warm.mark_as_run).
        env = {"GPULAB_RUN_URL": f"{self.runner_url}{standby_id}/", "GPULAB_RUN_TOKEN": TOKEN_PLACEHOLDER,
               "GPULAB_STANDBY_URL": f"{self.runner_url}standby/{standby_id}/", "GPULAB_STANDBY_TOKEN": token,
               "GPULAB_STANDBY_HINT": json.dumps(hint), "GPULAB_STANDBY_WAIT": str(self.idle_seconds),
               "CUDA_VISIBLE_DEVICES": ""}
        return standby, RunnerLaunch(standby_id, key.owner, key.python, env, key.limits)

    def started(self, standby_id: str, ref: ProcessRef) -> None:
        if standby_id in self.by_id:
            self.by_id[standby_id].ref = ref

    def forget(self, standby_id: str) -> Standby | None:
        """No more runs for it (it ended, expired, or its start failed)."""
        standby = self.by_id.pop(standby_id, None)
        if standby is not None and standby.waiting is not None and not standby.waiting.done():
            standby.waiting.set_result({"stop": True})
        return standby

    def forget_all(self) -> list[Standby]:
        return [s for s in (self.forget(i) for i in list(self.by_id)) if s is not None]

    async def next_run(self, standby_id: str, token: str) -> dict:
        """The standby's request: the run handed to it ({"env": ...}), or {"stop": true} after
        idle_seconds. Raises PermissionError for a token that is not this standby's."""
        standby = self.by_id.get(standby_id)
        if standby is None or not hmac.compare_digest(standby.token_hash, digest(token)) \
                or standby.waiting is not None:
            raise PermissionError("not a waiting standby's token")
        standby.waiting = asyncio.get_running_loop().create_future()
        self.log.info("standby %s for %s is warm", standby_id, standby.key.owner)
        try:
            return await asyncio.wait_for(asyncio.shield(standby.waiting), self.idle_seconds)
        except asyncio.TimeoutError:
            self.forget(standby_id)
            return {"stop": True}

    def gone(self, standby_id: str) -> None:
        """Its request was cut off (the process died): never hand it a run."""
        standby = self.by_id.get(standby_id)
        if standby is not None and not standby.run_id:
            self.forget(standby_id)

    def hand_over(self, standby: Standby, run_id: str, env: dict) -> HandedRef | None:
        """Give `run_id`'s variables to the waiting standby; its reference, or None if it no longer waits."""
        if standby.waiting is None or standby.waiting.done() or standby.ref is None or not standby.ref.running():
            return None
        standby.run_id = run_id
        standby.waiting.set_result({"env": env})
        self.handed[run_id] = standby.id
        return HandedRef(standby.ref.pid, standby.ref.start_ticks, standby.id)

    def picked_up(self, run_id: str) -> None:
        """The run's runner fetched its spec: from here on it is an ordinary run."""
        standby_id = self.handed.pop(run_id, None)
        if standby_id is not None:
            self.by_id.pop(standby_id, None)

    def lost(self, run_id: str) -> bool:
        """Handed to a standby that ended before fetching the spec: the run never began."""
        standby_id = self.handed.pop(run_id, None)
        if standby_id is None:
            return False
        self.by_id.pop(standby_id, None)
        return True
