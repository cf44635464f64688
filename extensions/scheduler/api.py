"""HTTP handlers of the scheduler service: thin, over SchedulerCore."""

from __future__ import annotations

import asyncio
from importlib import resources

from tornado import web

from gpulab.hub_config.services.web import ApiHandler, PageHandler

from .core import Who, changes_compute
from .schemas import CreateJob, CreateJobSchedule, CreateRun, CreateSchedule, RunNow, RunnerEvent, UpdateSchedule


class SchedulerApi(ApiHandler):
    # Schedules and runs carry their notebook, and a notebook with saved outputs and plots is
    # often several MiB.
    max_json_body = 32 << 20
    @property
    def core(self):
        return self.settings["core"]

    async def who(self) -> Who:
        return await self.core.directory.who(self.user_name)


class Notebooks(SchedulerApi):
    """The caller's notebooks (home and project folders), or one of them with ?path=."""

    async def get(self):
        files = self.settings.get("user_files")
        if files is None:
            raise web.HTTPError(400, "notebooks in homes are read on this machine's backend only; upload the notebook")
        path = self.get_argument("path", "")
        if path:
            self.write_json({"path": path, "notebook": await asyncio.to_thread(files.read, self.user_name, path)})
        else:
            self.write_json({"notebooks": await asyncio.to_thread(files.notebooks, self.user_name)})


class Options(SchedulerApi):
    async def get(self):
        self.write_json(self.core.options_for(await self.who()))


class Schedules(SchedulerApi):
    async def get(self):
        self.write_json(self.core.list_schedules(await self.who(), self.get_argument("project", None)))

    async def post(self):
        who, request = await self.who(), self.body_as(CreateSchedule)
        # In a thread: checking webhooks resolves host names, which must not hold up the service.
        schedule = await asyncio.to_thread(self.core.create_schedule, who, request)
        self.write_json(self.core.get_schedule(who, schedule.id), status=201)


class OneSchedule(SchedulerApi):
    async def get(self, schedule_id):
        self.write_json(self.core.get_schedule(await self.who(), schedule_id))

    async def patch(self, schedule_id):
        who, change = await self.who(), self.body_as(UpdateSchedule)
        # A change of compute is checked against the schedule's owner (who may not be the editor)
        owner = await self.core.directory.who(self.core.get_schedule(who, schedule_id).owner) \
            if changes_compute(change) else None
        self.write_json(await asyncio.to_thread(self.core.update_schedule, who, schedule_id, change, owner))

    async def delete(self, schedule_id):
        self.core.delete_schedule(await self.who(), schedule_id)
        self.set_status(204)
        self.finish()


class ScheduleRuns(SchedulerApi):
    async def get(self, schedule_id):
        who = await self.who()
        self.core.get_schedule(who, schedule_id)  # 404 unless visible
        self.write_json(self.core.list_runs(who, schedule_id=schedule_id))

    async def post(self, schedule_id):
        self.write_json(self.core.run_now(await self.who(), schedule_id, self.body_as(RunNow).parameters), status=201)


class Runs(SchedulerApi):
    async def get(self):
        self.write_json(self.core.list_runs(await self.who(), schedule_id=self.get_argument("schedule", None),
                                            status=self.get_argument("status", None)))

    async def post(self):
        who, request = await self.who(), self.body_as(CreateRun)
        self.write_json(await asyncio.to_thread(self.core.create_run, who, request), status=201)


class JobSchedules(SchedulerApi):
    """Schedule a script or a command on cron (`gpulab schedule create train.py --cron ... -- ARGS`)."""

    max_json_body = 96 << 20  # the snapshot, as for a job

    async def post(self):
        who, request = await self.who(), self.body_as(CreateJobSchedule)
        schedule = await asyncio.to_thread(self.core.create_job_schedule, who, request)
        self.write_json(self.core.get_schedule(who, schedule.id), status=201)


class Jobs(SchedulerApi):
    """Submit a script or a command job (`gpulab run train.py -- ARGS`): its runs are runs like any other."""

    max_json_body = 96 << 20  # the snapshot (at most 64 MiB of files, compressed) in base64

    async def post(self):
        who, request = await self.who(), self.body_as(CreateJob)
        self.write_json(await asyncio.to_thread(self.core.create_job, who, request), status=201)


class RunLog(SchedulerApi):
    """The run's output from ?offset= (bytes); `gpulab logs -f` follows it until `ended`."""

    async def get(self, run_id):
        try:
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            raise web.HTTPError(400, "offset: not a whole number") from None
        if offset < 0:
            raise web.HTTPError(400, "offset: must be 0 or more")
        self.write_json(self.core.run_log(await self.who(), run_id, offset))


class RunArtifact(SchedulerApi):
    """One of a job's files from outputs/ (`outputs/...`)."""

    async def get(self, run_id, relative):
        path = self.core.artifact(await self.who(), run_id, relative)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
        self.finish(path.read_bytes())


class OneRun(SchedulerApi):
    async def get(self, run_id):
        self.write_json(self.core.get_run(await self.who(), run_id))

    async def delete(self, run_id):
        self.core.delete_run(await self.who(), run_id)
        self.set_status(204)
        self.finish()


class StopRun(SchedulerApi):
    async def post(self, run_id):
        self.write_json(self.core.stop_run(await self.who(), run_id))


CONTENT_TYPES = {"output.ipynb": "application/x-ipynb+json", "output.html": "text/html; charset=utf-8",
                 "log.txt": "text/plain; charset=utf-8"}


class RunFile(SchedulerApi):
    async def get(self, run_id, name):
        path = self.core.run_file(await self.who(), run_id, name)
        self.set_header("Content-Type", CONTENT_TYPES[name])
        # A notebook's output may hold its own scripts: show it without letting them run here.
        self.set_header("Content-Security-Policy", "sandbox")
        if name != "output.html" or self.get_argument("download", None):
            self.set_header("Content-Disposition", f'attachment; filename="{run_id}-{name}"')
        self.finish(path.read_bytes())


class RunnerApi(ApiHandler):
    """What the runner calls, with its run's token; no hub identity involved."""

    def get_current_user(self):
        return None

    def check_xsrf_cookie(self):
        pass  # bearer-token requests from the runner carry no cookies

    @property
    def token(self) -> str:
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise web.HTTPError(403, "the runner authenticates with its run's token")
        return header[len("Bearer "):]

    @property
    def core(self):
        return self.settings["core"]


class RunnerReady(RunnerApi):
    """Answers once the service listens: the dispatcher starts runs only after it can reach this."""

    def get(self):
        self.set_status(204)
        self.finish()


class RunnerSpec(RunnerApi):
    def get(self, run_id):
        self.write_json(self.core.runner_spec(run_id, self.token))


class RunnerEvents(RunnerApi):
    def post(self, run_id):
        self.core.runner_event(run_id, self.token, self.body_as(RunnerEvent))
        self.set_status(204)
        self.finish()


class RunnerFiles(RunnerApi):
    async def put(self, run_id, name):
        await asyncio.to_thread(self.core.runner_file, run_id, self.token, name, self.request.body)
        self.set_status(204)
        self.finish()


class StandbyNext(RunnerApi):
    """A standby runner's one request: the run handed to it, or "stop" (executors/standby.py)."""

    standby_id = ""

    async def get(self, standby_id):
        standbys = self.core.standbys
        if standbys is None:
            raise web.HTTPError(404, "this scheduler has no standby runners")
        self.standby_id = standby_id
        try:
            answer = await standbys.next_run(standby_id, self.token)
        except PermissionError as refused:
            raise web.HTTPError(403, str(refused)) from None
        self.write_json(answer)

    def on_connection_close(self):
        if self.standby_id and self.core.standbys is not None:
            self.core.standbys.gone(self.standby_id)


class RunnerSnapshot(RunnerApi):
    def get(self, run_id):
        path = self.core.runner_snapshot(run_id, self.token)
        self.set_header("Content-Type", "application/gzip")
        self.finish(path.read_bytes())


class RunnerArtifacts(RunnerApi):
    async def put(self, run_id, relative):
        await asyncio.to_thread(self.core.runner_artifact, run_id, self.token, relative, self.request.body)
        self.set_status(204)
        self.finish()


class OpenApiDocument(ApiHandler):
    """The API's description, as committed in the repository."""

    def get(self):
        self.set_header("Content-Type", "application/yaml")
        self.finish(resources.files("gpulab.extensions.scheduler").joinpath("openapi.yaml").read_text())


class NoSuchApi(SchedulerApi):
    """Unknown API paths (and malformed ids) answer in JSON like every other error."""

    def prepare(self):
        raise web.HTTPError(404, f"no such API path: {self.request.path}")


class SchedulesPage(PageHandler):
    @web.authenticated
    async def get(self):
        core = self.settings["core"]
        who = await core.directory.who(self.user_name)
        self.render_page("schedules.html", schedules=core.list_schedules(who), runs=core.list_runs(who, limit=50))


ID = r"([0-9a-f-]{36})"
ROUTES = [
    ("api/openapi.yaml", OpenApiDocument),
    ("api/options", Options),
    ("api/notebooks", Notebooks),
    ("api/schedules", Schedules),
    (rf"api/schedules/{ID}", OneSchedule),
    (rf"api/schedules/{ID}/runs", ScheduleRuns),
    ("api/runs", Runs),
    ("api/jobs", Jobs),
    ("api/job-schedules", JobSchedules),
    (rf"api/runs/{ID}", OneRun),
    (rf"api/runs/{ID}/stop", StopRun),
    (rf"api/runs/{ID}/files/([a-z.]+)", RunFile),
    (rf"api/runs/{ID}/log", RunLog),
    (rf"api/runs/{ID}/artifacts/(outputs/.+)", RunArtifact),
    ("runner/ready", RunnerReady),
    (rf"runner/standby/{ID}/next", StandbyNext),
    (rf"runner/{ID}/spec", RunnerSpec),
    (rf"runner/{ID}/events", RunnerEvents),
    (rf"runner/{ID}/files/([a-z.]+)", RunnerFiles),
    (rf"runner/{ID}/snapshot", RunnerSnapshot),
    (rf"runner/{ID}/artifacts/(outputs/.+)", RunnerArtifacts),
    (r"(?:api|runner)/.*", NoSuchApi),
    ("", SchedulesPage),
]
