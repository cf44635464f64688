"""JupyterLab's "Run as a gpulab job…": routes in each user server that submit one of its .py files.

The browser cannot snapshot a folder of the server, so the server does what `gpulab run
train.py -- ARGS` does in its terminal: it checks the path (inside the server's root, an
existing .py file), packs the script's folder, and sends the CLI's request body to the central
scheduler with the server's own token, so the job runs as the server's owner. The central
scheduler's refusals come back with their status and message; the Lab extension
(labextension/) shows them as they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tornado import web

from gpulab.hub_config.client import ClientError, client_from_environment

from .job_request import job_request, script_command
from .snapshots import SnapshotError, pack

API = "services/scheduler/api/"
SERVICE = "services/scheduler/"
PREBUILT = Path(__file__).parent / "labextension" / "prebuilt"  # holds @gpulab/jobs/, as share/jupyter/labextensions


def labextension_folders(installed: list[str]) -> list[str]:
    """[the built Lab extension's folder] when none of `installed` (JupyterLab's labextensions
    path) has it: setuptools' editable installs skip setup.py's data_files."""
    if any(Path(folder, "@gpulab", "jobs", "package.json").is_file() for folder in installed):
        return []
    return [str(PREBUILT)]


class LabJob(BaseModel):
    """What the dialog sends: a path as JupyterLab names files (relative to the server's root)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096)
    arguments: str = Field("", max_length=100_000, description="split as a shell splits them")
    profile: str | None = Field(None, max_length=200, description="None: the scheduler's default profile")


def shown(path: str) -> str:
    return repr(path if len(path) <= 80 else path[:77] + "...")


def script_in_root(root: Path, path: str) -> Path:
    """The script `path` names, resolved; 400 when it leaves `root` or is no .py file, 404 when missing."""
    try:
        base = root.resolve()
        script = Path(base, path).resolve()
        if script != base and base not in script.parents:
            raise web.HTTPError(400, f"{shown(path)} is outside the server's folder")
        if script.suffix != ".py":
            raise web.HTTPError(400, f"{shown(path)} is not a Python script (.py)")
        if not script.exists():
            raise web.HTTPError(404, f"no such file: {shown(path)}")
        if not script.is_file():
            raise web.HTTPError(400, f"{shown(path)} is not a file")
    except (OSError, ValueError):  # a name too long, a NUL byte...
        raise web.HTTPError(400, f"{shown(path)} is not a file this server can read") from None
    return script


def arguments_of(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as error:  # an unclosed quote
        raise web.HTTPError(400, f"arguments: {error}") from None


def offered_profiles(options: dict) -> list[dict]:
    """The profiles a job can run on now (one available environment or more), for the dialog."""
    return [{"id": p["id"], "display_name": p["display_name"], "default": p["default"]}
            for p in options["profiles"] if any(e["unavailable"] is None for e in p["environments"])]


def run_links(base_url: str, run_id: str) -> dict:
    """Where the browser sees the run in the scheduler service: its page of runs (one row per run)
    and the run's own record."""
    service = url_path_join(base_url, SERVICE)
    return {"runs": service, "run": url_path_join(service, f"api/runs/{run_id}")}


class CentralJobs(APIHandler):
    """One error path: the central scheduler's refusals keep their status and message."""

    auth_resource = "gpulab_jobs"

    async def central(self, method: str, path: str, body=None):
        try:
            return await asyncio.to_thread(client_from_environment().request, method, API + path, body)
        except ClientError as error:
            raise web.HTTPError(error.status or 502, error.message) from None

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))


class LabJobs(CentralJobs):
    @web.authenticated
    @authorized("execute")
    async def post(self):
        try:
            request = LabJob.model_validate_json(self.request.body or b"{}")
        except ValidationError as error:
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors())
            raise web.HTTPError(400, where) from None
        script = script_in_root(Path(self.contents_manager.root_dir), request.path)
        arguments = arguments_of(request.arguments)
        try:
            snapshot = await asyncio.to_thread(pack, script.parent)
        except SnapshotError as error:
            raise web.HTTPError(400, str(error)) from None
        body = job_request("script", script_command(script, script.parent, arguments), script.stem, script.parent,
                           snapshot, profile=request.profile or None)
        run = await self.central("POST", "jobs", body)
        links = run_links(os.environ.get("JUPYTERHUB_BASE_URL", "/"), run["id"])
        self.write_json({"id": run["id"], "name": run["schedule_name"], "status": run["status"],
                         "profile": run["profile"], "message": run["message"], "command": run["command"],
                         "links": links}, status=201)


class LabJobProfiles(CentralJobs):
    @web.authenticated
    @authorized("read")
    async def get(self):
        self.write_json({"profiles": offered_profiles(await self.central("GET", "options"))})


class LabJobLog(CentralJobs):
    """A run's output from ?offset=, for the log panel that follows it in JupyterLab."""

    @web.authenticated
    @authorized("read")
    async def get(self, run_id):
        offset = self.get_argument("offset", "0")
        if not offset.isdigit():
            raise web.HTTPError(400, "offset: not a whole number")
        self.write_json(await self.central("GET", f"runs/{run_id}/log?offset={offset}"))


HANDLERS = [
    ("/gpulab/jobs", LabJobs),
    ("/gpulab/jobs/profiles", LabJobProfiles),
    (r"/gpulab/jobs/([0-9a-f-]{36})/log", LabJobLog),
]
