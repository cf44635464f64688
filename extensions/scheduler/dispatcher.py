"""The scheduler's loop: turn due slots into runs, start queued runs, watch the running ones.

Exactly one run per slot, even across restarts and several scheduler processes: a run is
keyed by (schedule, slot, attempt) in the database, and creating the slot's run and moving
the schedule's last slot happen in one transaction. A run moves QUEUED -> RUNNING with a
conditional update, so two processes cannot both start it. GPU runs claim compute as
interactive servers do (gpulab.compute.claims.claim, from the executor's pool: the same
ledger locally, the cluster on Kubernetes), and wait in the queue, with the reason, while
devices are busy or the owner is over quota.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from sqlalchemy import select, update

from gpulab.compute.claims import Claim, Purpose, Refused, Standing, claim
from gpulab.compute.profile_options import resolve_options

from . import cron
from .core import SchedulerCore, aware, committed, retry_delay, token_digest
from gpulab.spawner.backends.protocol import Executor, RunRequest
from .models import (
    COMPLETED, FAILED, NOTEBOOK, QUEUED, RUNNING, STOPPED, STOPPING, TIMED_OUT, WAITING, Run, Schedule,
)
from .run_options import detach
from .warm import hint_of

IDLE_POLL_SECONDS = 1.0
LAUNCH_GRACE_SECONDS = 120  # a RUNNING run with no runner reference after this was never launched
DELIVERY_GRACE_SECONDS = 600  # how long after its timeout a runner keeps trying to hand over its results
# After (re)starting, runners waiting to hand over a result get this long (their backoff is at
# most 30 s) before a run past its timeout is stopped: the notebook may have ended in time.
REATTACH_GRACE_SECONDS = 60


async def _no_extra_env(schedule: Schedule) -> dict:
    return {}


def warm_hint(schedule: Schedule) -> dict:
    """The kernel and folder a notebook's run uses, for a standby of its owner's next run."""
    if schedule.kind not in (None, "", NOTEBOOK):
        return {}
    try:
        notebook = json.loads(schedule.notebook)
        notebook, options = detach({"metadata": notebook.get("metadata", {})})  # not a copy of every cell
    except (ValueError, TypeError, AttributeError):
        return {}
    return hint_of(notebook, options)


class Dispatcher:
    def __init__(self, core: SchedulerCore, executor: Executor, notifier, log, runner_url: str,
                 extra_env: Callable[[Schedule], Awaitable[dict]] | None = None):
        self.core = core
        self.executor = executor
        self.notifier = notifier
        self.log = log
        self.runner_url = runner_url.rstrip("/") + "/"
        self.extra_env = extra_env or _no_extra_env  # e.g. MLflow's variables, per run
        self.settings = core.settings.scheduler
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        if executor is not None:
            core.picked_up = executor.picked_up  # a runner fetched its spec: its run began
            core.standbys = getattr(executor, "standbys", None)  # the warm path's standbys ask for runs
        self.watching_since = self.clock()

    @property
    def clock(self):
        return self.core.clock

    def wake(self) -> None:
        """Run a tick now; callable from any thread (handlers run some core calls in threads)."""
        if self._loop is None:
            self._wake.set()
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.wait_until_reachable()
        self.watching_since = self.clock()
        while True:
            self._wake.clear()
            try:
                await self.tick()
                timeout = self.sleep_seconds()
            except Exception:  # one bad tick (a database hiccup) must not stop scheduling
                self.log.exception("scheduler tick failed")
                timeout = IDLE_POLL_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass

    async def wait_until_reachable(self) -> None:
        """Start nothing before runners can reach this service: a runner launched earlier would
        find its scheduler refusing connections."""
        from tornado.httpclient import AsyncHTTPClient

        client = AsyncHTTPClient()
        while True:
            try:
                await client.fetch(self.runner_url + "ready", request_timeout=5)
                self.log.info("runners reach the scheduler at %s; dispatching", self.runner_url)
                return
            except Exception as error:  # refused, timed out, not ours yet: try again
                self.log.debug("not reachable yet at %sready: %s", self.runner_url, error)
            await asyncio.sleep(0.2)

    def sleep_seconds(self) -> float:
        """Until the next slot's prewarm time, at most IDLE_POLL_SECONDS (running runs are watched)."""
        now = self.clock()
        prewarm = timedelta(seconds=self.settings.prewarm_seconds)
        soonest = IDLE_POLL_SECONDS
        with self.core.sessions() as session:
            for schedule in session.scalars(select(Schedule).where(Schedule.active.is_(True), Schedule.cron.isnot(None))):
                try:
                    slot = cron.next_slot(schedule.cron, schedule.timezone, aware(schedule.last_slot))
                except Exception:  # trigger() records it on the schedule
                    continue
                soonest = min(soonest, max(0.0, (slot - prewarm - now).total_seconds()))
        return soonest

    async def tick(self) -> None:
        now = self.clock()
        self.trigger(now)
        await self.supervise(now)
        await self.dispatch(now)

    # ------------------------------------------------------------ triggers

    def trigger(self, now: datetime) -> None:
        prewarm = timedelta(seconds=self.settings.prewarm_seconds)
        grace = timedelta(seconds=self.settings.missed_slot_grace_seconds)
        with self.core.sessions() as session:
            due = [(s.id, s.last_error) for s in session.scalars(select(Schedule).where(Schedule.active.is_(True),
                                                                                      Schedule.cron.isnot(None)))]
        for schedule_id, last_error in due:
            try:
                self._trigger_one(schedule_id, now, prewarm, grace)
            except Exception as error:  # isolated: shown on this schedule, the others go on
                message = (getattr(error, "message", None) or f"{type(error).__name__}: {error}")[:2000]
                if message != last_error:  # log once, not every tick
                    self.log.error("schedule %s cannot be triggered: %s", schedule_id, message, exc_info=True)
                    with self.core.sessions.begin() as session:
                        session.execute(update(Schedule).where(Schedule.id == schedule_id).values(last_error=message))

    def _trigger_one(self, schedule_id: str, now: datetime, prewarm: timedelta, grace: timedelta) -> None:
        def make(session, schedule_id=schedule_id):
            schedule = session.get(Schedule, schedule_id)
            if schedule is None or not schedule.active:
                return []
            if schedule.last_error:
                schedule.last_error = ""  # it works again (a fixed expression, a passing hiccup)
            slots = cron.due_slots(schedule.cron, schedule.timezone, aware(schedule.last_slot), now + prewarm)
            if not slots:
                return []
            chosen = cron.slots_to_run(slots, now, self.settings.missed_slots, grace)
            for slot in chosen:
                self.core.queue_run(session, schedule, slot, not_before=slot - prewarm)
            skipped = [s for s in slots if s not in chosen]
            if skipped:
                self.log.info("schedule %s: %d slot(s) missed while down were skipped (missed_slots: %s)",
                              schedule.name, len(skipped), self.settings.missed_slots)
            schedule.last_slot = slots[-1]
            return chosen

        created = committed(self.core.sessions, make)
        if created:
            self.log.info("schedule %s: queued run(s) for %s", schedule_id,
                          ", ".join(s.isoformat() for s in created))

    # ------------------------------------------------------------ running runs

    async def supervise(self, now: datetime) -> None:
        """Watch RUNNING runs, whoever started them: runners outlive a restart of the scheduler or
        the hub, and a fresh process finds them by their reference (pid and start ticks)."""
        with self.core.sessions() as session:
            running = [(r.id, r.status, r.executor_ref, aware(r.started_at), r.outcome)
                       for r in session.scalars(select(Run).where(Run.status.in_((RUNNING, STOPPING))))]
        for run_id, status, text, started, outcome in running:
            ref = self.executor.parse_ref(text) if text else None
            schedule = self._schedule_of(run_id)
            if status == STOPPING:
                if ref is not None:
                    await asyncio.to_thread(self.executor.stop, run_id, ref)
                self.finish(run_id, STOPPED, None)
                continue
            if ref is None:  # a scheduler stopped between marking it RUNNING and launching the runner
                if started and now - started > timedelta(seconds=LAUNCH_GRACE_SECONDS):
                    self.finish(run_id, FAILED, "the scheduler stopped while starting the runner")
                continue
            code = self.executor.exit_code(ref)
            if code is None:
                # A runner that has reported its outcome is only handing over its files: no timeout.
                if not outcome and started and now - started > timedelta(seconds=schedule.timeout_seconds) \
                        and not self._handing_over(started, now):
                    await asyncio.to_thread(self.executor.stop, run_id, ref)
                    self.finish(run_id, TIMED_OUT,
                                f"timed out after {schedule.timeout_seconds}s (timeout_seconds); the kernel was stopped")
                continue
            if self.executor.lost_before_start(run_id, ref):
                self._queue_again(run_id)
                continue
            outcome = self._outcome(run_id)  # read after the exit: the runner reports before it ends
            # -1: it ended while another scheduler process was its parent; what it reported decides.
            if outcome == COMPLETED and code in (0, -1):
                self.finish(run_id, COMPLETED, "")
            else:
                self.finish(run_id, FAILED, self._failure_message(run_id, code))

    def _queue_again(self, run_id: str) -> None:
        """A standby given the run ended before it began it (killed): the run starts again, cold.
        It keeps its started_at, the mark that its start was announced (dispatch sends it once);
        the next start sets its own time."""
        with self.core.sessions.begin() as session:
            again = session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING).values(
                status=QUEUED, executor_ref="", token_hash="")).rowcount
        if again:
            self.log.warning("run %s: the standby runner it was handed to ended before starting it; "
                             "it starts again", run_id)
            self.wake()

    def _handing_over(self, started: datetime, now: datetime) -> bool:
        """A run started before this process watched may be waiting to hand over a result."""
        return started < self.watching_since and now - self.watching_since <= timedelta(seconds=REATTACH_GRACE_SECONDS)

    def _outcome(self, run_id: str) -> str:
        with self.core.sessions() as session:
            return session.get(Run, run_id).outcome

    def _failure_message(self, run_id: str, code: int) -> str:
        with self.core.sessions() as session:
            error = session.get(Run, run_id).error or {}
        if error.get("ename"):
            cell = f" in cell {error['cell_index']}" if error.get("cell_index") is not None else ""
            if cell and error.get("execution_count") is not None:
                cell += f" (In [{error['execution_count']}])"  # the number the user sees in the notebook
            return f"{error['ename']}{cell}: {error.get('evalue', '')}".strip()
        if error.get("message"):
            return error["message"]
        if code == -1:
            return "the runner ended without reporting a result (killed?); see log.txt"
        return f"the runner exited with status {code} without reporting a result; see log.txt"

    def _schedule_of(self, run_id: str) -> Schedule:
        with self.core.sessions() as session:
            return session.get(Schedule, session.get(Run, run_id).schedule_id)

    def finish(self, run_id: str, status: str, message: str | None) -> None:
        """End a running run, exactly once: a second call (or a second process) changes nothing."""
        now = self.clock()
        retry = None
        with self.core.sessions.begin() as session:
            ended = session.execute(update(Run).where(Run.id == run_id, Run.status.in_((RUNNING, STOPPING)))
                                    .values(status=status, ended_at=now)).rowcount
            if not ended:
                return
            run = session.get(Run, run_id)
            schedule = session.get(Schedule, run.schedule_id)
            if message is not None:
                run.message = message
            if "log.txt" not in run.outputs and self.core.storage.path(run_id, "log.txt").exists():
                run.outputs = [*run.outputs, "log.txt"]
            claim_id = run.claim_id
            ref = self.executor.parse_ref(run.executor_ref) if run.executor_ref else None
            # An attempt whose runner reported COMPLETED is never run again, whatever else failed.
            retryable = run.outcome != COMPLETED and (
                status == FAILED or (status == TIMED_OUT and schedule.retry_on_timeout))
            if retryable and run.attempt <= schedule.max_retries:
                retry = self.core.queue_run(session, schedule, run.slot, attempt=run.attempt + 1,
                                            parameters=run.parameters, not_before=now + retry_delay(schedule))
                run.message = (run.message + f"; retry {run.attempt} of {schedule.max_retries} queued").lstrip("; ")
            summary = self.core.run_out(session, run)
        if claim_id:
            self.executor.pool.release(claim_id)
        self.executor.cleanup(run_id, ref, status)
        self.log.info("run %s of %s: %s %s", run_id, summary.schedule_name, status, summary.message)
        self.notifier.send("success" if status == COMPLETED else "failure", schedule, summary)
        if retry is not None:
            self.wake()

    # ------------------------------------------------------------ the queue

    async def dispatch(self, now: datetime) -> None:
        with self.core.sessions() as session:
            waiting = [r.id for r in session.scalars(select(Run).where(Run.status.in_((QUEUED, WAITING)))
                                                     .order_by(Run.created_at))]
            running = list(session.scalars(select(Run.owner).where(Run.status.in_((RUNNING, STOPPING)))))
        for run_id in waiting:
            with self.core.sessions() as session:
                run = session.get(Run, run_id)
                schedule = session.get(Schedule, run.schedule_id)
                if run.status not in (QUEUED, WAITING) or aware(run.not_before) > now:
                    continue
                owner, slot = run.owner, aware(run.slot)
                # Given back by a lost standby (_queue_again): the user was told it started. A
                # retry is a run of its own (the next attempt) and is announced as one.
                announced = run.started_at is not None
            reason = self._limit_reason(owner, running)
            claim = None
            if reason is None:
                claim, reason = await self._claim(run_id, owner, schedule)
            if reason is None:
                gang = await self.executor.admit(self.core.profile(schedule.profile), schedule.nodes or 1)
                if gang is not None:
                    if claim and claim.claim_id:
                        self.executor.pool.release(claim.claim_id)
                    reason = f"waiting: {gang}"
            if reason is not None:
                self._wait(run_id, reason)
                continue
            if await self._start(run_id, schedule, claim, slot):
                running.append(owner)
                if not announced:
                    with self.core.sessions() as session:
                        self.notifier.send("start", schedule, self.core.run_out(session, session.get(Run, run_id)))

    def _limit_reason(self, owner: str, running: list[str]) -> str | None:
        if len(running) >= self.settings.max_concurrent_runs:
            return f"waiting: {len(running)} runs are executing (scheduler.max_concurrent_runs)"
        mine = running.count(owner)
        if mine >= self.settings.max_runs_per_user:
            return f"waiting: {owner} has {mine} runs executing (scheduler.max_runs_per_user)"
        return None

    async def _claim(self, run_id: str, owner: str, schedule: Schedule) -> tuple[Claim | None, str | None]:
        """(the run's GPU claim, None) or (None, why it waits)."""
        profile = self.core.profile(schedule.profile)
        if not profile.uses_gpu:
            return None, None  # a run is not a server: without GPUs no quota applies (no hub look-up needed)
        who = await self.core.directory.who(owner)
        quotas = self.core.settings.quotas
        standing = Standing(group_members={g: tuple(await self.core.directory.members(g)) for g in who.groups
                                           if g in quotas.groups})
        try:
            # the project, where the schedule has one, is what its GPU-hours count towards (usage, budgets)
            purpose = Purpose.run(run_id, project=schedule.project or "")
            return claim(owner, who.groups, purpose, profile, quotas=quotas, standing=standing,
                         pool=self.executor.pool, nodes=schedule.nodes or 1), None
        except Refused as refused:
            return None, f"waiting for {profile.gpu.describe()}: {refused.message}"

    def _wait(self, run_id: str, reason: str) -> None:
        with self.core.sessions.begin() as session:
            session.execute(update(Run).where(Run.id == run_id, Run.status.in_((QUEUED, WAITING)))
                            .values(status=WAITING, message=reason))

    async def _start(self, run_id: str, schedule: Schedule, claim: Claim | None, slot: datetime | None) -> bool:
        token = secrets.token_urlsafe(32)
        devices = list(claim.devices) if claim else []
        # Launched up to prewarm_seconds early so the kernel is warm; the runner holds the first
        # cell until the slot, so the run starts at its slot, not at the launch.
        started = max(self.clock(), slot) if slot else self.clock()
        with self.core.sessions.begin() as session:
            moved = session.execute(update(Run).where(Run.id == run_id, Run.status.in_((QUEUED, WAITING))).values(
                status=RUNNING, message="", started_at=started, token_hash=token_digest(token),
                claim_id=claim.claim_id if claim else "", devices=devices)).rowcount
        if not moved:  # another scheduler process started it, or it was stopped meanwhile
            if claim and claim.claim_id:
                self.executor.pool.release(claim.claim_id)
            return False
        env = {"GPULAB_RUN_URL": f"{self.runner_url}{run_id}/", "GPULAB_RUN_TOKEN": token,
               # how long the runner keeps trying to reach the scheduler (a restart of the hub or of it)
               "GPULAB_RUN_DELIVER_SECONDS": str(schedule.timeout_seconds + DELIVERY_GRACE_SECONDS),
               **await self.extra_env(schedule)}
        profile = self.core.profile(schedule.profile)
        if schedule.kind != NOTEBOOK and profile.uses_gpu:
            # torchrun starts one worker per GPU the job holds unless told otherwise (its PET_* defaults)
            env["PET_NPROC_PER_NODE"] = str(len(devices) or profile.gpu.count)
        environment = next(e for e in self.core.environments if e.id == schedule.environment)
        try:
            chosen = resolve_options(profile.id, profile.options, schedule.profile_options or {})
            request = RunRequest(run_id, schedule.owner, profile, environment, env, claim,
                                 self.core.storage.path(run_id, "log.txt"), schedule.timeout_seconds,
                                 nodes=schedule.nodes or 1,
                                 overrides=tuple(o.kubespawner_override for o in chosen),
                                 warm_hint=warm_hint(schedule))
            ref = await self.executor.start(request)
        except Exception as error:  # the run fails with the reason; the scheduler goes on
            self.log.exception("could not start run %s", run_id)
            self.finish(run_id, FAILED, f"could not start: {error}")
            return False
        with self.core.sessions.begin() as session:
            session.execute(update(Run).where(Run.id == run_id).values(executor_ref=str(ref)))
        self.log.info("run %s of %s started as %s (%s)", run_id, schedule.name, schedule.owner, ref)
        return True
