"""The scheduler's rules: who may create, see and change schedules and runs, and what is valid.

No HTTP here: handlers call these methods and core errors (Invalid, NotAllowed, NotFound,
Conflict) become 4xx responses in one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from collections.abc import Mapping
from typing import Any, Callable, Protocol, overload

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gpulab.compute.claims import Purpose, Standing, quota_reason
from gpulab.compute.profile_options import OptionError, option_keys, resolve_options
from gpulab.compute.profiles import ChoiceError, Profile, profile_from_settings, resolve_profile, visible_profiles
from gpulab.extensions.projects.membership import can
from gpulab.hub_config.services.errors import Conflict, Invalid, NotAllowed, NotFound
from gpulab.images.catalog import load_catalog
from gpulab.spawner.environments import offered, options_for, resolve_environment

from . import cron, snapshots, webhooks
from gpulab.spawner.backends.kubernetes.job_overrides import APPLIED, unsupported
from .models import ACTIVE_STATES, FINAL_STATES, NOTEBOOK, QUEUED, RUNNING, STOPPED, STOPPING, Run, Schedule
from .service_settings import SchedulerServiceSettings
from .schemas import CreateJob, CreateJobSchedule, CreateRun, CreateSchedule, LogChunk, RunnerEvent, RunOut, ScheduleOut, UpdateSchedule

OUTPUT_FILES = ("output.ipynb", "output.html", "log.txt")
MAX_CELLS = 1_000_000
LOG_CHUNK_BYTES = 1 << 20  # one answer of the log route
ARTIFACTS_LIMIT_BYTES = 256 << 20  # what one job may hand over from outputs/


@dataclass(frozen=True)
class Who:
    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False


class Directory(Protocol):
    async def who(self, name: str) -> Who:
        """The hub user `name` with their groups (NotFound if there is none)."""

    async def members(self, group: str) -> list[str]:
        """The user names in hub group `group`."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def changes_compute(change: UpdateSchedule) -> bool:
    """Whether a schedule change chooses compute (profile, environment, options) anew."""
    return bool({"profile", "environment", "profile_options"} & change.model_fields_set)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RunStorage:
    """Each run's files (executed notebook, HTML, log) in a folder of its own."""

    def __init__(self, root: Path):
        self.root = root

    def folder(self, run_id: str) -> Path:
        return self.root / run_id

    def path(self, run_id: str, name: str) -> Path:
        if name not in OUTPUT_FILES:
            raise NotFound(f"no file {name!r}; runs have {', '.join(OUTPUT_FILES)}")
        return self.folder(run_id) / name

    def write(self, run_id: str, name: str, data: bytes) -> None:
        path = self.path(run_id, name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(data)

    def snapshot(self, schedule_id: str) -> Path:
        """A job's snapshot, kept beside the runs' folders (every run of the job unpacks it)."""
        return self.root.parent / "snapshots" / f"{schedule_id}.tar.gz"

    def artifact(self, run_id: str, relative: str) -> Path:
        """A job's artifact: `outputs/...` as the job wrote it, never a path out of its folder."""
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts or path.parts[:1] != ("outputs",) or len(path.parts) < 2 \
                or any(part in ("", ".") for part in relative.split("/")):
            raise Invalid(f"{relative!r} is not a path under outputs/")
        return self.folder(run_id).joinpath("artifacts", *path.parts)


class SchedulerCore:
    def __init__(self, sessions, settings: SchedulerServiceSettings | Mapping[str, Any], directory: Directory,
                 storage: RunStorage,
                 clock: Callable[[], datetime] = utcnow, wake: Callable[[], None] = lambda: None,
                 python_exists=None, driver=lambda: None):
        self.sessions = sessions
        self.settings = SchedulerServiceSettings.of(settings)
        self.directory = directory
        self.storage = storage
        self.clock = clock
        self.wake = wake
        self.python_exists = python_exists
        self.driver = driver
        self.picked_up: Callable[[str], None] = lambda run_id: None  # the dispatcher's: a runner fetched its spec
        self.standbys = None  # the local executor's standby runners (executors/standby.py), if any
        self.profiles: tuple[Profile, ...] = tuple(map(profile_from_settings, self.settings.profiles))
        environments = self.settings.environments
        catalog = load_catalog(Path(environments.catalog) if environments.catalog else None)
        self.environments = offered(catalog, environments)

    # ------------------------------------------------------------ permissions

    def may_read(self, who: Who, schedule: Schedule) -> bool:
        return who.admin or schedule.owner == who.name or bool(
            schedule.project and can(list(who.groups), schedule.project, "viewer"))

    def may_change(self, who: Who, schedule: Schedule) -> bool:
        return who.admin or schedule.owner == who.name or bool(
            schedule.project and can(list(who.groups), schedule.project, "editor"))

    def _check_project(self, who: Who, project: str | None) -> None:
        if project and not who.admin and not can(list(who.groups), project, "editor"):
            if can(list(who.groups), project, "viewer"):
                raise NotAllowed(f"viewers of project {project!r} cannot create or change its schedules")
            raise NotAllowed(f"{who.name} is not an editor of project {project!r}")

    # ------------------------------------------------------------ validation

    def _compute(self, who: Who, profile_id: str | None, environment_id: str | None) -> tuple[str, str]:
        """The profile and environment the owner may run on; 400/403 with the reason otherwise."""
        try:
            profile = resolve_profile(self.profiles, {"profile": profile_id}, who.name, list(who.groups), who.admin)
            options = options_for(profile, self.environments, self.driver() if profile.uses_gpu else None,
                                  self.python_exists)
            environment = resolve_environment(profile, options, environment_id,
                                              self.settings.environments.default)
        except ChoiceError as refused:
            raise (NotAllowed if refused.status == 403 else Invalid)(refused.message) from None
        return profile.id, environment.id

    def _profile_options(self, profile_id: str, asked: dict) -> dict:
        """The profile's options as asked, checked as a server's are (400 with the reason); on
        Kubernetes the overrides they choose must be ones a run's Job can apply."""
        profile = self.profile(profile_id)
        extra = sorted(set(asked) - option_keys(profile.options))
        if extra:
            names = ", ".join(o.name for o in profile.options) or "none"
            raise Invalid(f"profile_options: unknown option(s) {', '.join(extra)} for profile {profile_id!r}; "
                          f"its options: {names}")
        try:
            chosen = resolve_options(profile.id, profile.options, asked)
        except OptionError as refused:
            raise Invalid(f"profile_options: {refused}") from None
        if self.settings.spawner.backend == "kubernetes":
            not_applied = unsupported([profile.kubespawner_override, *(c.kubespawner_override for c in chosen)])
            if not_applied:
                raise Invalid(f"profile {profile_id!r} (with these options) sets KubeSpawner setting(s) "
                              f"{', '.join(not_applied)}, which a run's Job cannot apply; a run applies "
                              f"{', '.join(APPLIED)}")
        return dict(asked)

    def options_for(self, who: Who) -> dict:
        """The profiles `who` may run on, each with the environments that fit it and can run now."""
        profiles = []
        for profile in visible_profiles(self.profiles, who.name, list(who.groups), who.admin):
            options = options_for(profile, self.environments, self.driver() if profile.uses_gpu else None,
                                  self.python_exists)
            profiles.append({"id": profile.id, "display_name": profile.display_name, "description": profile.description,
                             "gpu": profile.gpu.describe(), "default": profile.default,
                             "environments": [{"id": o.id, "display_name": o.environment.display_name,
                                               "unavailable": o.unavailable} for o in options]})
        return {"profiles": profiles}

    def _check_webhooks(self, notify: dict) -> None:
        """400 for a webhook that reaches an internal address (checked again when sending)."""
        allowed = webhooks.allowed_networks(self.settings.scheduler.notifications.webhook_allowed_networks)
        for url in notify.get("webhooks") or []:
            webhooks.check(url, allowed)

    def profile(self, profile_id: str) -> Profile:
        return next(p for p in self.profiles if p.id == profile_id)

    def _check_quota(self, who: Who, profile: Profile, nodes: int = 1) -> None:
        """403 for a run that no quota or group budget would ever let start, even with nothing else
        running: the claim's own check (compute.claims), so it would otherwise wait forever. A run that
        fits but not now waits in the queue with the reason."""
        if not profile.uses_gpu:
            return
        problem = quota_reason(self.settings.quotas, who.name, who.groups, Purpose.run("new"),
                               profile.gpu.count * nodes, Standing(), {})
        if problem:
            raise NotAllowed(f"refused: {problem} ({nodes} x {profile.gpu.describe()})" if nodes > 1
                             else f"refused: {problem}")

    # ------------------------------------------------------------ schedules

    def create_schedule(self, who: Who, request: CreateSchedule | CreateRun) -> Schedule:
        if isinstance(request, CreateSchedule):
            cron.validate(request.cron, request.timezone, self.clock())
            when: tuple[str | None, str, bool] = (request.cron, request.timezone, request.active)
        else:  # a one-off run: no trigger of its own
            when = (None, "UTC", False)
        cron_expression, timezone_name, active = when
        self._check_webhooks(request.notify.model_dump(mode="json"))
        self._check_project(who, request.project)
        profile, environment = self._compute(who, request.profile, request.environment)
        profile_options = self._profile_options(profile, request.profile_options)
        self._check_quota(who, self.profile(profile))
        now = self.clock()
        schedule = Schedule(
            id=str(uuid.uuid4()), name=request.name, owner=who.name, project=request.project,
            notebook_name=request.notebook_name, notebook=json.dumps(request.notebook), input_path=request.input_path,
            parameters=request.parameters, cron=cron_expression,
            timezone=timezone_name, profile=profile, environment=environment,
            profile_options=profile_options, timeout_seconds=request.timeout_seconds or self.settings.scheduler.default_timeout_seconds,
            max_retries=request.max_retries, min_retry_interval_millis=request.min_retry_interval_millis,
            retry_on_timeout=request.retry_on_timeout, notify=request.notify.model_dump(mode="json"),
            output_formats=list(request.output_formats), tags=list(request.tags),
            active=active, last_slot=now, created_at=now, updated_at=now)
        with self.sessions.begin() as session:
            session.add(schedule)
        self.wake()
        return schedule

    def _schedule(self, session, who: Who, schedule_id: str, change: bool = False) -> Schedule:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None or not self.may_read(who, schedule):
            raise NotFound(f"no schedule {schedule_id}")
        if change and not self.may_change(who, schedule):
            raise NotAllowed(f"{who.name} may not change schedule {schedule_id}")
        return schedule

    def list_schedules(self, who: Who, project: str | None = None) -> list[ScheduleOut]:
        with self.sessions() as session:
            query = select(Schedule).where(Schedule.cron.isnot(None)).order_by(Schedule.created_at)
            if project:
                query = query.where(Schedule.project == project)
            return [self.schedule_out(s) for s in session.scalars(query) if self.may_read(who, s)]

    def get_schedule(self, who: Who, schedule_id: str) -> ScheduleOut:
        with self.sessions() as session:
            return self.schedule_out(self._schedule(session, who, schedule_id))

    def update_schedule(self, who: Who, schedule_id: str, change: UpdateSchedule, owner: Who | None = None) -> ScheduleOut:
        """`owner`: the schedule's owner as the directory has them, needed when the change chooses
        compute (changes_compute), which is checked against the owner, not the one who edits."""
        with self.sessions.begin() as session:
            schedule = self._schedule(session, who, schedule_id, change=True)
            fields = change.model_dump(exclude_unset=True, mode="json")
            if "cron" in fields or "timezone" in fields:
                if schedule.cron is None:
                    raise Invalid("a one-off run has no cron schedule to change")
                cron.validate(fields.get("cron", schedule.cron), fields.get("timezone", schedule.timezone), self.clock())
            if "notify" in fields:
                self._check_webhooks(fields["notify"] or {})
            if changes_compute(change):
                if owner is None or owner.name != schedule.owner:
                    raise ValueError(f"a change of compute is checked against the owner {schedule.owner!r}: pass them")
                fields["profile"], fields["environment"] = self._compute(
                    owner, fields.get("profile", schedule.profile), fields.get("environment", schedule.environment))
                fields["profile_options"] = self._profile_options(
                    fields["profile"], fields.get("profile_options") or
                    (schedule.profile_options if fields["profile"] == schedule.profile else {}))
            if fields.get("active") and not schedule.active:
                schedule.last_slot = self.clock()  # resuming does not run the slots missed while paused
            for key, value in fields.items():
                setattr(schedule, key, value)
            schedule.updated_at = self.clock()
        self.wake()
        return self.get_schedule(who, schedule_id)

    def delete_schedule(self, who: Who, schedule_id: str) -> None:
        with self.sessions.begin() as session:
            schedule = self._schedule(session, who, schedule_id, change=True)
            if any(r.status in ACTIVE_STATES for r in session.scalars(select(Run).where(Run.schedule_id == schedule_id))):
                raise Conflict("the schedule has a run queued or running; stop it first")
            session.delete(schedule)

    def schedule_out(self, schedule: Schedule) -> ScheduleOut:
        next_run, problem = None, schedule.last_error or ""
        if schedule.cron and schedule.active:
            try:
                next_run = cron.next_slot(schedule.cron, schedule.timezone,
                                          max(aware(schedule.last_slot) or self.clock(), self.clock()))
            except Exception as error:  # a row stored before validation was tightened still lists
                problem = problem or getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        return ScheduleOut(
            id=schedule.id, name=schedule.name, owner=schedule.owner, project=schedule.project,
            notebook_name=schedule.notebook_name, input_path=schedule.input_path, parameters=schedule.parameters,
            cron=schedule.cron, timezone=schedule.timezone, profile=schedule.profile,
            profile_options=schedule.profile_options or {},
            environment=schedule.environment, timeout_seconds=schedule.timeout_seconds,
            max_retries=schedule.max_retries, min_retry_interval_millis=schedule.min_retry_interval_millis,
            retry_on_timeout=schedule.retry_on_timeout, notify=schedule.notify,
            output_formats=schedule.output_formats, tags=schedule.tags, active=schedule.active,
            next_run=next_run, created_at=aware(schedule.created_at), updated_at=aware(schedule.updated_at),
            last_error=problem, kind=schedule.kind or NOTEBOOK, command=schedule.command or [])

    # ------------------------------------------------------------ runs

    def queue_run(self, session, schedule: Schedule, slot: datetime | None, attempt: int = 1,
                  parameters: dict | None = None, not_before: datetime | None = None,
                  idempotency_token: str | None = None) -> Run:
        now = self.clock()
        run = Run(id=str(uuid.uuid4()), schedule_id=schedule.id, owner=schedule.owner, slot=slot, attempt=attempt,
                  status=QUEUED, message="", not_before=not_before or now, created_at=now,
                  parameters={**schedule.parameters, **(parameters or {})}, error=None,
                  idempotency_token=idempotency_token)
        session.add(run)
        return run

    def _run_with_token(self, who: Who, token: str | None) -> RunOut | None:
        """The run `who` already asked for with this idempotency token, if any."""
        if not token:
            return None
        with self.sessions() as session:
            existing = session.scalars(select(Run).where(Run.owner == who.name, Run.idempotency_token == token)).first()
            return self.run_out(session, existing) if existing is not None else None

    def create_run(self, who: Who, request: CreateRun) -> RunOut:
        """Run a notebook once, now: a one-off schedule with a single run."""
        existing = self._run_with_token(who, request.idempotency_token)
        if existing is not None:
            return existing
        schedule = self.create_schedule(who, request)
        with self.sessions.begin() as session:
            run = self.queue_run(session, session.get(Schedule, schedule.id), None,
                                 idempotency_token=request.idempotency_token)
            run_id = run.id
        self.wake()
        return self.get_run(who, run_id)

    def create_job(self, who: Who, request: CreateJob) -> RunOut:
        """Run a script or a command once, now: a one-off schedule of that kind with a single run."""
        existing = self._run_with_token(who, request.idempotency_token)
        if existing is not None:
            return existing
        schedule = self._store_job(who, request)
        with self.sessions.begin() as session:
            session.add(schedule)
            session.flush()
            run_id = self.queue_run(session, schedule, None, idempotency_token=request.idempotency_token).id
        self.wake()
        return self.get_run(who, run_id)

    def create_job_schedule(self, who: Who, request: CreateJobSchedule) -> Schedule:
        """A script or a command on a cron schedule: its snapshot is taken now, once."""
        cron.validate(request.cron, request.timezone, self.clock())
        schedule = self._store_job(who, request)
        schedule.cron, schedule.timezone, schedule.active = request.cron, request.timezone, request.active
        with self.sessions.begin() as session:
            session.add(schedule)
        self.wake()
        return schedule

    def _store_job(self, who: Who, request: CreateJob) -> Schedule:
        """A job's schedule (not yet added) after every check, with its snapshot stored."""
        self._check_webhooks(request.notify.model_dump(mode="json"))
        self._check_project(who, request.project)
        profile_id, environment = self._compute(who, request.profile, request.environment)
        if request.nodes > 1 and self.settings.spawner.backend != "kubernetes":
            raise Invalid(f"nodes: {request.nodes} nodes need spawner.backend kubernetes; this hub runs jobs "
                          "on one machine (use a profile with more GPUs and torchrun --nproc-per-node)")
        profile_options = self._profile_options(profile_id, request.profile_options)
        self._check_quota(who, self.profile(profile_id), request.nodes)
        try:
            data = base64.b64decode(request.snapshot, validate=True)
            snapshots.check(data)
        except ValueError:  # binascii.Error, or characters base64 never has
            raise Invalid("snapshot: not base64") from None
        except snapshots.SnapshotError as error:
            raise Invalid(f"snapshot: {error}") from None
        now = self.clock()
        schedule = Schedule(
            id=str(uuid.uuid4()), name=request.name, owner=who.name, project=request.project,
            notebook_name=request.command[1] if request.kind == "script" else request.command[0], notebook="",
            input_path=request.source, parameters={}, cron=None, timezone="UTC", profile=profile_id,
            profile_options=profile_options, environment=environment,
            timeout_seconds=request.timeout_seconds or self.settings.scheduler.default_timeout_seconds,
            max_retries=request.max_retries, min_retry_interval_millis=0, retry_on_timeout=False,
            notify=request.notify.model_dump(mode="json"), output_formats=[], tags=list(request.tags),
            active=False, last_slot=now, created_at=now, updated_at=now, kind=request.kind,
            command=list(request.command), nodes=request.nodes)
        path = self.storage.snapshot(schedule.id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(data)
        return schedule

    def run_now(self, who: Who, schedule_id: str, parameters: dict) -> RunOut:
        with self.sessions.begin() as session:
            schedule = self._schedule(session, who, schedule_id, change=True)
            run_id = self.queue_run(session, schedule, None, parameters=parameters).id
        self.wake()
        return self.get_run(who, run_id)

    def _run(self, session, who: Who, run_id: str, change: bool = False) -> tuple[Run, Schedule]:
        run = session.get(Run, run_id)
        schedule = session.get(Schedule, run.schedule_id) if run else None
        if run is None or schedule is None or not self.may_read(who, schedule):
            raise NotFound(f"no run {run_id}")
        if change and not self.may_change(who, schedule):
            raise NotAllowed(f"{who.name} may not change run {run_id}")
        return run, schedule

    def get_run(self, who: Who, run_id: str) -> RunOut:
        with self.sessions() as session:
            run, _ = self._run(session, who, run_id)
            return self.run_out(session, run)

    def list_runs(self, who: Who, schedule_id: str | None = None, status: str | None = None,
                  limit: int = 100) -> list[RunOut]:
        with self.sessions() as session:
            query = select(Run).order_by(Run.created_at.desc())
            if schedule_id:
                query = query.where(Run.schedule_id == schedule_id)
            if status:
                query = query.where(Run.status == status.upper())
            found = []
            for run in session.scalars(query):
                schedule = session.get(Schedule, run.schedule_id)
                if self.may_read(who, schedule):
                    found.append(self.run_out(session, run))
                if len(found) >= limit:
                    break
            return found

    def stop_run(self, who: Who, run_id: str) -> RunOut:
        with self.sessions.begin() as session:
            run, _ = self._run(session, who, run_id, change=True)
            if run.status in FINAL_STATES:
                raise Conflict(f"run {run_id} has already ended ({run.status})")
            run.message = f"stopped by {who.name}"
            if run.status == RUNNING:
                run.status = STOPPING  # the dispatcher stops the process, then marks it STOPPED
            else:
                run.status, run.ended_at = STOPPED, self.clock()
        self.wake()
        return self.get_run(who, run_id)

    def delete_run(self, who: Who, run_id: str) -> None:
        with self.sessions.begin() as session:
            run, _ = self._run(session, who, run_id, change=True)
            if run.status in ACTIVE_STATES:
                raise Conflict("the run is still queued or running; stop it first")
            session.delete(run)

    def run_file(self, who: Who, run_id: str, name: str) -> Path:
        with self.sessions() as session:
            run, _ = self._run(session, who, run_id)
            if name not in run.outputs:
                raise NotFound(f"run {run_id} has no {name} (it has: {', '.join(run.outputs) or 'nothing yet'})")
        return self.storage.path(run_id, name)

    def run_log(self, who: Who, run_id: str, offset: int = 0) -> LogChunk:
        """The run's output from `offset`, while it runs too (locally the runner writes it as it goes)."""
        with self.sessions() as session:
            run, _ = self._run(session, who, run_id)
            status = run.status
        path = self.storage.path(run_id, "log.txt")
        text = b""
        if path.exists():
            with open(path, "rb") as log:
                log.seek(max(offset, 0))
                text = log.read(LOG_CHUNK_BYTES)
        ended = status in FINAL_STATES and len(text) < LOG_CHUNK_BYTES
        if not ended:
            text = whole_characters(text)  # the rest of a character cut here comes with the next chunk
        return LogChunk(text=text.decode(errors="replace"), offset=offset, next_offset=offset + len(text),
                        status=status, ended=ended)

    def artifact(self, who: Who, run_id: str, relative: str) -> Path:
        with self.sessions() as session:
            run, _ = self._run(session, who, run_id)
            if relative not in run.artifacts:
                raise NotFound(f"run {run_id} has no artifact {relative!r} "
                               f"(it has: {', '.join(run.artifacts) or 'none'})")
        return self.storage.artifact(run_id, relative)

    def run_out(self, session, run: Run) -> RunOut:
        schedule = session.get(Schedule, run.schedule_id)
        started, ended = aware(run.started_at), aware(run.ended_at)
        return RunOut(
            id=run.id, schedule_id=run.schedule_id, schedule_name=schedule.name, notebook_name=schedule.notebook_name,
            output_formats=schedule.output_formats, owner=run.owner,
            project=schedule.project, slot=aware(run.slot), attempt=run.attempt, status=run.status,
            message=run.message, created_at=aware(run.created_at), started_at=started,
            kernel_ready_at=aware(run.kernel_ready_at), ended_at=ended,
            duration_seconds=(ended - started).total_seconds() if started and ended else None,
            parameters=run.parameters, profile=schedule.profile, profile_options=schedule.profile_options or {},
            environment=schedule.environment, devices=run.devices, cells_done=run.cells_done, cells_total=run.cells_total,
            error=run.error,
            outputs=run.outputs, mlflow_run_id=run.mlflow_run_id, kind=schedule.kind or NOTEBOOK,
            command=schedule.command or [], nodes=schedule.nodes or 1, exit_code=run.exit_code,
            artifacts=run.artifacts or [])

    # ------------------------------------------------------------ the runner's side

    def _runner_run(self, session, run_id: str, token: str) -> Run:
        run = session.get(Run, run_id)
        if run is None or not run.token_hash or not hmac.compare_digest(run.token_hash, token_digest(token)):
            raise NotAllowed("not this run's token")
        return run

    def runner_spec(self, run_id: str, token: str) -> dict:
        with self.sessions() as session:
            run = self._runner_run(session, run_id, token)
            schedule = session.get(Schedule, run.schedule_id)
            self.picked_up(run_id)
            if schedule.kind != NOTEBOOK:
                return {"kind": schedule.kind, "command": schedule.command, "source": schedule.input_path,
                        "parameters": {}, "run_name": f"{schedule.name} #{run.attempt}", "schedule": schedule.name,
                        "profile": schedule.profile, "environment": schedule.environment}
            return {"notebook": json.loads(schedule.notebook), "parameters": run.parameters,
                    "output_formats": schedule.output_formats, "not_before": aware(run.slot).isoformat()
                    if run.slot else None, "run_name": f"{schedule.name} #{run.attempt}",
                    "schedule": schedule.name, "profile": schedule.profile, "environment": schedule.environment}

    def runner_event(self, run_id: str, token: str, event: RunnerEvent) -> None:
        for name in ("cells_done", "cells_total"):
            value = getattr(event, name)
            if value is not None and not 0 <= value <= MAX_CELLS:  # the column is a 32-bit integer
                raise Invalid(f"{name}: {value} is out of range (0-{MAX_CELLS})")
        with self.sessions.begin() as session:
            run = self._runner_run(session, run_id, token)
            if event.kind == "kernel_ready":
                run.kernel_ready_at = self.clock()
            if event.cells_total is not None:
                run.cells_total = event.cells_total
            if event.cells_done is not None:
                run.cells_done = event.cells_done
            if event.mlflow_run_id:
                run.mlflow_run_id = event.mlflow_run_id
            if event.exit_code is not None:
                run.exit_code = event.exit_code
            if event.kind == "finished":
                # The dispatcher ends the run when it sees the process exit; this is the outcome.
                run.outcome = event.status or ""
                run.error = event.error
        if event.kind == "finished":
            self.wake()

    def runner_file(self, run_id: str, token: str, name: str, data: bytes) -> None:
        if name != "output.ipynb":
            raise Invalid("the runner uploads output.ipynb; the scheduler makes the rest")
        with self.sessions() as session:
            run = self._runner_run(session, run_id, token)
            wants_html = "html" in session.get(Schedule, run.schedule_id).output_formats
        self.storage.write(run_id, name, data)
        stored = [name]
        if wants_html:
            try:
                html = self.render_html(data)
            except Exception:  # the notebook is kept; a refusal would only make the runner retry
                logging.getLogger("gpulab.scheduler").exception("run %s: could not render output.html", run_id)
            else:
                self.storage.write(run_id, "output.html", html)
                stored.append("output.html")
        with self.sessions.begin() as session:
            run = session.get(Run, run_id)
            run.outputs = [*run.outputs, *(s for s in stored if s not in run.outputs)]

    def runner_snapshot(self, run_id: str, token: str) -> Path:
        with self.sessions() as session:
            run = self._runner_run(session, run_id, token)
            path = self.storage.snapshot(run.schedule_id)
        if not path.exists():
            raise NotFound(f"run {run_id} has no snapshot (it runs a notebook)")
        return path

    def runner_artifact(self, run_id: str, token: str, relative: str, data: bytes) -> None:
        path = self.storage.artifact(run_id, relative)
        with self.sessions() as session:
            run = self._runner_run(session, run_id, token)
            kept = sum(self.storage.artifact(run_id, name).stat().st_size for name in run.artifacts
                       if name != relative and self.storage.artifact(run_id, name).exists())
        if kept + len(data) > ARTIFACTS_LIMIT_BYTES:
            raise Invalid(f"the job's artifacts would pass {ARTIFACTS_LIMIT_BYTES >> 20} MiB")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(data)
        with self.sessions.begin() as session:
            run = session.get(Run, run_id)
            if relative not in run.artifacts:
                run.artifacts = [*run.artifacts, relative]

    def render_html(self, notebook: bytes) -> bytes:
        """The executed notebook as HTML (the exporter is built once; rendering runs no code)."""
        import nbformat

        if getattr(self, "_exporter", None) is None:
            from nbconvert import HTMLExporter

            self._exporter = HTMLExporter()
        body, _ = self._exporter.from_notebook_node(nbformat.reads(notebook.decode(), as_version=4))
        return body.encode()


def whole_characters(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for its lead
        length = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
        return data[:-back] if back < length else data
    return data


def retry_delay(schedule: Schedule) -> timedelta:
    return timedelta(milliseconds=schedule.min_retry_interval_millis)


def committed(session_factory, make: Callable):
    """Run `make(session)` in a transaction; None if the database refused it as a duplicate."""
    try:
        with session_factory.begin() as session:
            return make(session)
    except IntegrityError:
        return None
