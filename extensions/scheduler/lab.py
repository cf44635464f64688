"""jupyter-scheduler in each user server, forwarding to gpulab's central scheduler.

JupyterLab's "Create Notebook Job" UI talks to jupyter-scheduler's REST API in the user's
server. `CentralScheduler` implements jupyter-scheduler's scheduler interface by calling the
central service with the server's own hub token, so jobs run centrally, as the user, on the
hub's profiles, and keep running when the server is culled. Environments are gpulab's
environments and compute types are gpulab's profiles. `GpulabSchedulerApp` replaces
jupyter-scheduler's extension so that a refused request is a 4xx with gpulab's message
instead of the 500 jupyter-scheduler returns for every error; it also serves the routes of
JupyterLab's "Run as a gpulab job…" (lab_jobs.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_path
from jupyter_scheduler.environments import EnvironmentManager
from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from jupyter_scheduler.extension import SchedulerApp
from jupyter_scheduler.models import (
    CountJobsQuery, CreateJob, CreateJobDefinition, CreateJobFromDefinition, DescribeJob, DescribeJobDefinition,
    JobFile, ListJobDefinitionsQuery, ListJobDefinitionsResponse, ListJobsQuery, ListJobsResponse, RuntimeEnvironment,
    Status, UpdateJob, UpdateJobDefinition,
)
from jupyter_scheduler.pydantic_v1 import ValidationError
from jupyter_scheduler.scheduler import BaseScheduler
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from traitlets import default

from gpulab.hub_config.client import ClientError, client_from_environment

from .lab_jobs import HANDLERS as JOB_HANDLERS
from .lab_jobs import labextension_folders
from .parameters import ParameterError, from_strings
from .run_options import notebook_location

API = "services/scheduler/api/"
STATUS = {"QUEUED": Status.QUEUED, "WAITING": Status.QUEUED, "RUNNING": Status.IN_PROGRESS,
          "STOPPING": Status.STOPPING, "STOPPED": Status.STOPPED, "COMPLETED": Status.COMPLETED,
          "FAILED": Status.FAILED, "TIMED_OUT": Status.FAILED}


class CentralError(SchedulerError):
    """A refusal from the central scheduler, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def millis(iso: str | None) -> int | None:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


def central():
    return client_from_environment()


def call(method: str, path: str, body=None):
    try:
        return central().request(method, API + path, body)
    except ClientError as error:
        raise CentralError(error.status or 502, error.message) from None


def typed(parameters: dict | None) -> dict:
    """jupyter-scheduler sends parameters as strings; type them as `papermill -p` (and `gpulab run -p`) does."""
    try:
        return from_strings(parameters)
    except ParameterError as error:
        raise CentralError(400, str(error)) from None


class CentralEnvironments(EnvironmentManager):
    def list_environments(self) -> list[RuntimeEnvironment]:
        profiles = call("GET", "options")["profiles"]
        found: dict[str, dict] = {}
        for profile in profiles:
            for env in profile["environments"]:
                if env["unavailable"] is None:
                    entry = found.setdefault(env["id"], {"label": env["display_name"], "profiles": []})
                    entry["profiles"].append(profile["id"])
        default = next((p["id"] for p in profiles if p["default"]), None)
        return [RuntimeEnvironment(name=env_id, label=e["label"], description=e["label"], file_extensions=["ipynb"],
                                   output_formats=["ipynb", "html"], metadata={}, compute_types=e["profiles"],
                                   default_compute_type=default if default in e["profiles"] else e["profiles"][0],
                                   utc_only=False)
                for env_id, e in found.items()]

    def manage_environments_command(self) -> str:
        return ""

    def output_formats_mapping(self) -> dict[str, str]:
        return {"ipynb": "Notebook", "html": "HTML"}


class CentralScheduler(BaseScheduler):
    task_runner = None  # the central service runs the jobs

    def __init__(self, root_dir, environments_manager, db_url=None, config=None, **kwargs):
        super().__init__(root_dir=root_dir, environments_manager=environments_manager, config=config, **kwargs)

    def _path(self, input_uri: str) -> Path:
        """The notebook's file, which must lie in the server's root (as JupyterLab's paths do)."""
        shown = input_uri if len(input_uri) <= 80 else input_uri[:77] + "..."
        try:
            root = Path(self.root_dir).resolve()
            path = Path(root, input_uri).resolve()
            inside = path == root or root in path.parents
            if not inside or not path.is_file():
                raise CentralError(400, f"notebook {shown!r} does not exist")
        except (OSError, ValueError):  # a name too long, a NUL byte...
            raise CentralError(400, f"notebook {shown!r} does not exist") from None
        return path

    def _notebook(self, input_uri: str) -> dict:
        shown = input_uri if len(input_uri) <= 80 else input_uri[:77] + "..."
        try:
            return json.loads(self._path(input_uri).read_text())
        except OSError as error:
            raise CentralError(400, f"cannot read {shown!r}: {error.strerror or error}") from None
        except ValueError:  # not JSON, not UTF-8
            raise CentralError(400, f"{shown!r} is not a notebook (not JSON)") from None

    def _request(self, model) -> dict:
        location = notebook_location(self._path(model.input_uri), os.environ.get("HOME", ""))
        return {"name": model.name, "notebook": self._notebook(model.input_uri),
                "notebook_name": os.path.basename(model.input_uri), "input_path": location,
                "parameters": typed(model.parameters), "profile": model.compute_type,
                "environment": model.runtime_environment_name,
                "output_formats": [f for f in (model.output_formats or ["ipynb"]) if f in ("ipynb", "html")] or ["ipynb"],
                "tags": list(model.tags or [])}

    # ------------------------------------------------------------ jobs (runs)

    def create_job(self, model: CreateJob) -> str:
        body = self._request(model)
        if model.idempotency_token:
            body["idempotency_token"] = model.idempotency_token
        return call("POST", "runs", body)["id"]

    def _describe(self, run: dict) -> DescribeJob:
        files = [JobFile(display_name={"output.ipynb": "Notebook", "output.html": "HTML", "log.txt": "Log"}[name],
                         file_format={"output.ipynb": "ipynb", "output.html": "html", "log.txt": "log"}[name],
                         file_path=None)
                 for name in run["outputs"] if name != "log.txt"]
        return DescribeJob(job_id=run["id"], name=run["schedule_name"], input_filename=run["notebook_name"],
                           output_formats=run["output_formats"],
                           runtime_environment_name=run["environment"], compute_type=run["profile"],
                           parameters={k: str(v) for k, v in run["parameters"].items()},
                           job_definition_id=run["schedule_id"], job_files=files, url=run["id"],
                           create_time=millis(run["created_at"]), update_time=millis(run["ended_at"] or run["created_at"]),
                           start_time=millis(run["started_at"]), end_time=millis(run["ended_at"]),
                           status=STATUS[run["status"]], status_message=run["message"] or None)

    def get_job(self, job_id: str, job_files=True) -> DescribeJob:
        return self._describe(call("GET", f"runs/{job_id}"))

    def list_jobs(self, query: ListJobsQuery) -> ListJobsResponse:
        path = "runs" + (f"?schedule={query.job_definition_id}" if query.job_definition_id else "")
        jobs = [self._describe(run) for run in call("GET", path)]
        if query.status:
            jobs = [j for j in jobs if j.status == query.status]
        if query.name:
            jobs = [j for j in jobs if query.name in j.name]
        return ListJobsResponse(jobs=jobs[: int(query.max_items)], total_count=len(jobs))

    def count_jobs(self, query: CountJobsQuery) -> int:
        return sum(1 for run in call("GET", "runs") if STATUS[run["status"]] == query.status)

    def update_job(self, job_id: str, model: UpdateJob):
        if model.status == Status.STOPPED:
            self.stop_job(job_id)

    def delete_job(self, job_id: str):
        call("DELETE", f"runs/{job_id}")

    def stop_job(self, job_id: str):
        call("POST", f"runs/{job_id}/stop")

    # ------------------------------------------------------------ job definitions (schedules)

    def create_job_definition(self, model: CreateJobDefinition) -> str:
        if not model.schedule:
            raise CentralError(400, "a job definition needs a schedule (a cron expression)")
        body = {**self._request(model), "cron": model.schedule, "timezone": model.timezone or "UTC"}
        return call("POST", "schedules", body)["id"]

    def _definition(self, schedule: dict) -> DescribeJobDefinition:
        return DescribeJobDefinition(
            job_definition_id=schedule["id"], name=schedule["name"], input_filename=schedule["notebook_name"],
            runtime_environment_name=schedule["environment"], compute_type=schedule["profile"],
            parameters={k: str(v) for k, v in schedule["parameters"].items()}, schedule=schedule["cron"],
            timezone=schedule["timezone"], create_time=millis(schedule["created_at"]),
            update_time=millis(schedule["updated_at"]), active=schedule["active"], output_formats=schedule["output_formats"],
            tags=schedule["tags"])

    def get_job_definition(self, job_definition_id: str) -> DescribeJobDefinition:
        return self._definition(call("GET", f"schedules/{job_definition_id}"))

    def list_job_definitions(self, query: ListJobDefinitionsQuery) -> ListJobDefinitionsResponse:
        found = [self._definition(s) for s in call("GET", "schedules")]
        if query.name:
            found = [d for d in found if query.name in d.name]
        return ListJobDefinitionsResponse(job_definitions=found[: int(query.max_items)], total_count=len(found))

    def update_job_definition(self, job_definition_id: str, model: UpdateJobDefinition):
        fields = model.dict(exclude_unset=True)
        body = {key: fields[key] for key in ("name", "active", "timezone") if key in fields}
        if "schedule" in fields:
            body["cron"] = fields["schedule"]
        if "parameters" in fields:
            body["parameters"] = typed(fields["parameters"])
        if "compute_type" in fields:
            body["profile"] = fields["compute_type"]
        if "runtime_environment_name" in fields:
            body["environment"] = fields["runtime_environment_name"]
        call("PATCH", f"schedules/{job_definition_id}", body)

    def delete_job_definition(self, job_definition_id: str):
        call("DELETE", f"schedules/{job_definition_id}")

    def create_job_from_definition(self, job_definition_id: str, model: CreateJobFromDefinition):
        return call("POST", f"schedules/{job_definition_id}/runs",
                    {"parameters": typed(model.parameters)})["id"]

    # ------------------------------------------------------------ output files

    def get_staging_paths(self, model) -> dict[str, str]:
        """The run's outputs, fetched from the central service into a local staging folder."""
        folder = Path(jupyter_data_dir(), "gpulab_scheduler", model.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for fmt, name in (("ipynb", "output.ipynb"), ("html", "output.html")):
            try:
                data = central().download(f"{API}runs/{model.job_id}/files/{name}")
            except ClientError:
                continue
            target = folder / name
            target.write_bytes(data)
            paths[fmt] = str(target)
        paths["input"] = paths.get("ipynb", str(folder / "output.ipynb"))
        return paths


def _status(value: str) -> Status:
    return Status(value.upper())


# Query arguments jupyter-scheduler parses without checking (a bad one is its 500)
QUERY = {"status": _status, "start_time": int, "max_items": int}
# Fields its models read before validating them (a missing one is a KeyError, its 500)
CREATING = (("/scheduler/jobs", "/scheduler/job_definitions"), ("name", "input_uri", "runtime_environment_name"))


class CentralStatus:
    """jupyter-scheduler's handlers turn every error into a 500; keep the central service's 4xx,
    and answer a request jupyter-scheduler could not read with a 400 that says why."""

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)  # authenticates first
        for name, parse in QUERY.items():
            for value in self.get_query_arguments(name):
                try:
                    parse(value)
                except ValueError:
                    expected = ", ".join(s.value for s in Status) if name == "status" else "an integer"
                    raise web.HTTPError(400, f"{name}={value[:40]!r}: expected {expected}") from None
        paths, fields = CREATING
        if self.request.method == "POST" and self.request.path.rstrip("/").endswith(paths):
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError:
                raise web.HTTPError(400, "the request body is not valid JSON") from None
            missing = [f for f in fields if not isinstance(body, dict) or not isinstance(body.get(f), str)]
            if missing:
                raise web.HTTPError(400, f"missing or not a string: {', '.join(missing)}")

    def _handle_request_exception(self, e):
        cause = e.__cause__ if isinstance(e, web.HTTPError) else None
        if isinstance(cause, (ValidationError, InputUriError)):
            cause = CentralError(400, str(cause))
        if isinstance(cause, CentralError):
            e = web.HTTPError(cause.status, str(cause))
            self.send_error(cause.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class GpulabSchedulerApp(SchedulerApp):
    name = "gpulab_scheduler"
    handlers = [*((path, type(handler.__name__, (CentralStatus, handler), {}))
                  for path, handler in SchedulerApp.handlers), *JOB_HANDLERS]

    def _link_jupyter_server_extension(self, serverapp):
        # The Lab extension of lab_jobs.py, from the source folder when the install left it out
        # (editable installs do). Extensions link in name order: JupyterLab's link reads this.
        # extend(): kept with a list or a `.append(...)` from the user's own config alike
        serverapp.config.LabApp.extra_labextensions_path.extend(labextension_folders(jupyter_path("labextensions")))
        super()._link_jupyter_server_extension(serverapp)

    def initialize_settings(self):
        # jupyter-scheduler's own creates its SQLite database in the user's data folder at every
        # start (~4 ms, a file in each home) and starts its task runner on it; the central
        # scheduler keeps every job centrally and never opens it. What the handlers use, as there.
        ExtensionApp.initialize_settings(self)
        environments = self.environment_manager_class()
        scheduler = self.scheduler_class(root_dir=self.serverapp.root_dir, environments_manager=environments,
                                         config=self.config)
        self.settings.update(environments_manager=environments, scheduler=scheduler,
                             job_files_manager=self.job_files_manager_class(scheduler=scheduler))

    @default("scheduler_class")
    def _scheduler_class(self):
        return CentralScheduler

    @default("environment_manager_class")
    def _environment_manager_class(self):
        return CentralEnvironments


def _jupyter_server_extension_points():
    return [{"module": "gpulab.extensions.scheduler.lab", "app": GpulabSchedulerApp}]
