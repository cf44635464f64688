"""Request and response models of the scheduler's REST API (validated at the edge)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from .parameters import ParameterError, checked
from .run_options import RunOptions, attach

Event = Literal["start", "success", "failure"]
OutputFormat = Literal["ipynb", "html"]
# The compute fields a schedule, a run and a job are asked with, declared once.
ProfileOptions = Annotated[dict[str, str], Field(max_length=50, description=(
    "choices within the profile, as a server's user_options: "
    "{\"image\": \"minimal\"} or {\"image--unlisted-choice\": \"...\"}"))]
ProjectSlug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")]
TimeoutSeconds = Annotated[int, Field(ge=10, le=7 * 86400)]
Retries = Annotated[int, Field(ge=0, le=10)]


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhooks: list[HttpUrl] = Field(default_factory=list, max_length=5)
    emails: list[str] = Field(default_factory=list, max_length=20)
    on: list[Event] = Field(default_factory=lambda: list[Event](["failure"]))

    @field_validator("emails")
    @classmethod
    def _emails(cls, emails: list[str]) -> list[str]:
        for address in emails:
            if "@" not in address or " " in address:
                raise ValueError(f"{address!r} is not an e-mail address")
        return emails


class RunPolicy(BaseModel):
    """The knobs shared by schedules and one-off runs (names as in Databricks/Airflow jobs)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    notebook: dict = Field(description="the notebook (nbformat 4 JSON)")
    notebook_name: str = Field("notebook.ipynb", min_length=1, max_length=255)
    input_path: str = Field("", max_length=1024, description="where the notebook is, relative to the owner's home "
                            "(or absolute); its folder is the working directory unless `cwd` says otherwise")
    parameters: dict[str, Any] = Field(default_factory=dict)
    kernel_name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$",
                                    description="kernel to run (Papermill's -k); default: the notebook's kernelspec")
    cwd: str | None = Field(None, min_length=1, max_length=1024, pattern=r"^[^\x00]*$",
                            description="working directory (Papermill's --cwd), relative to the owner's home")
    profile: str | None = None
    profile_options: ProfileOptions = Field(default_factory=dict)
    environment: str | None = None
    project: ProjectSlug | None = None
    timeout_seconds: TimeoutSeconds | None = None
    max_retries: Retries = 0
    min_retry_interval_millis: int = Field(0, ge=0, le=86_400_000)
    retry_on_timeout: bool = False
    notify: Notify = Field(default_factory=Notify)
    output_formats: list[OutputFormat] = Field(default_factory=lambda: list[OutputFormat](["ipynb", "html"]))
    tags: list[str] = Field(default_factory=list, max_length=20)
    idempotency_token: str | None = Field(None, max_length=255)

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, notebook: dict) -> dict:
        if notebook.get("nbformat") != 4 or not isinstance(notebook.get("cells"), list):
            raise ValueError("not a Jupyter notebook (nbformat 4 with a list of cells)")
        return notebook

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict) -> dict:
        return checked_parameters(parameters)

    @model_validator(mode="after")
    def _carry_run_options(self):
        # The store keeps the notebook as sent; these ride in it to the runner (see run_options.py)
        self.notebook = attach(self.notebook, RunOptions(self.kernel_name, self.cwd, self.input_path))
        return self


def checked_parameters(parameters: dict) -> dict:
    try:
        return checked(parameters)
    except ParameterError as error:
        raise ValueError(str(error)) from None


def _checked(parameters: dict | None) -> dict | None:
    return None if parameters is None else checked_parameters(parameters)


class CreateSchedule(RunPolicy):
    cron: str = Field(min_length=1, max_length=120)
    timezone: str = "UTC"
    active: bool = True


class CreateRun(RunPolicy):
    """Run a notebook once, now (`gpulab run`)."""


class CreateJob(BaseModel):
    """Run a script or a command once, now, in a snapshot of a folder (`gpulab run train.py -- ARGS`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["script", "command"]
    command: list[str] = Field(min_length=1, max_length=1000, description="the argv run in the snapshot; a "
                               "script's is [\"python\", SCRIPT, *ARGS]")
    snapshot: str = Field(description="the folder, as a base64-encoded gzipped tar (snapshots.pack)")
    source: str = Field("", max_length=1024, description="where the folder was, for the log")
    profile: str | None = None
    profile_options: ProfileOptions = Field(default_factory=dict)
    environment: str | None = None
    project: ProjectSlug | None = None
    nodes: int = Field(1, ge=1, le=64, description="pods of a multi-node job (Kubernetes only)")
    timeout_seconds: TimeoutSeconds | None = None
    max_retries: Retries = 0
    notify: Notify = Field(default_factory=Notify)
    tags: list[str] = Field(default_factory=list, max_length=20)
    idempotency_token: str | None = Field(None, max_length=255)

    @field_validator("command")
    @classmethod
    def _command(cls, command: list[str]) -> list[str]:
        if not command[0] or any("\x00" in part for part in command):
            raise ValueError("the command's first word is empty, or a word holds a NUL byte")
        return command


class CreateJobSchedule(CreateJob):
    """A script or a command on a cron schedule (`gpulab schedule create train.py --cron ... -- ARGS`):
    the folder is snapshotted once, when it is scheduled, and every run unpacks that snapshot."""

    cron: str = Field(min_length=1, max_length=120)
    timezone: str = "UTC"
    active: bool = True


class UpdateSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    active: bool | None = None
    cron: str | None = Field(None, min_length=1, max_length=120)
    timezone: str | None = None
    parameters: dict[str, Any] | None = None
    profile: str | None = None
    profile_options: dict[str, str] | None = Field(None, max_length=50)
    environment: str | None = None
    timeout_seconds: TimeoutSeconds | None = None
    max_retries: Retries | None = None
    notify: Notify | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict | None) -> dict | None:
        return _checked(parameters)


class RunNow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict | None) -> dict | None:
        return _checked(parameters)


class ScheduleOut(BaseModel):
    id: str
    name: str
    owner: str
    project: str | None
    notebook_name: str
    input_path: str
    parameters: dict[str, Any]
    cron: str | None
    timezone: str
    profile: str
    profile_options: dict[str, str] = Field(default_factory=dict)
    environment: str
    timeout_seconds: int
    max_retries: int
    min_retry_interval_millis: int
    retry_on_timeout: bool
    notify: dict
    output_formats: list[str]
    tags: list[str]
    active: bool
    next_run: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str = ""  # why the dispatcher could not trigger it last time ("" when it could)
    kind: str = "notebook"  # or a job's: "script", "command"
    command: list[str] = Field(default_factory=list)  # a job's argv in its snapshot


class RunOut(BaseModel):
    id: str
    schedule_id: str
    schedule_name: str
    notebook_name: str
    output_formats: list[str]
    owner: str
    project: str | None
    slot: datetime | None
    attempt: int
    status: str
    message: str
    created_at: datetime
    started_at: datetime | None
    kernel_ready_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    parameters: dict[str, Any]
    profile: str
    profile_options: dict[str, str] = Field(default_factory=dict)
    environment: str
    devices: list[str]
    cells_done: int
    cells_total: int
    error: dict | None
    outputs: list[str]
    mlflow_run_id: str
    kind: str = "notebook"  # notebook, script or command
    command: list[str] = []
    nodes: int = 1
    exit_code: int | None = None  # a job's command, as it exited
    artifacts: list[str] = []  # a job's files from outputs/ (api/runs/ID/artifacts/PATH)


class LogChunk(BaseModel):
    """A run's log from `offset` (`gpulab logs -f` asks again from `next_offset` until `ended`)."""

    text: str
    offset: int
    next_offset: int
    status: str
    ended: bool


class RunnerEvent(BaseModel):
    """What the runner reports while it works (authenticated by the run's own token)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kernel_ready", "progress", "finished"]
    cells_done: int | None = None
    cells_total: int | None = None
    status: Literal["COMPLETED", "FAILED"] | None = None
    error: dict | None = None
    mlflow_run_id: str | None = None
    exit_code: int | None = Field(None, ge=-255, le=255)
