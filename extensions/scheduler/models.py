"""Schedules (what to run, when, how) and runs (each execution) in gpulab's database.

A schedule runs a notebook (Papermill) or a job: a script or a command in a snapshot of a
folder. Both are runs of one queue, one GPU ledger and one quota; the kind only changes what
the runner executes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gpulab.db import Base

QUEUED, WAITING, RUNNING, STOPPING = "QUEUED", "WAITING", "RUNNING", "STOPPING"
COMPLETED, FAILED, TIMED_OUT, STOPPED = "COMPLETED", "FAILED", "TIMED_OUT", "STOPPED"
ACTIVE_STATES = (QUEUED, WAITING, RUNNING, STOPPING)
FINAL_STATES = (COMPLETED, FAILED, TIMED_OUT, STOPPED)
NOTEBOOK, SCRIPT, COMMAND = "notebook", "script", "command"


class Schedule(Base):
    """A notebook with its parameters, compute and policies; a cron expression makes it recur."""

    __tablename__ = "scheduler_schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(255), index=True)
    project: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    notebook_name: Mapped[str] = mapped_column(String(255))
    notebook: Mapped[str] = mapped_column(Text)  # the notebook as submitted (JSON)
    input_path: Mapped[str] = mapped_column(String(1024), default="")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    profile: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    min_retry_interval_millis: Mapped[int] = mapped_column(Integer, default=0)
    retry_on_timeout: Mapped[bool] = mapped_column(Boolean, default=False)
    notify: Mapped[dict] = mapped_column(JSON, default=dict)  # {"webhooks": [...], "emails": [...], "on": [...]}
    output_formats: Mapped[list] = mapped_column(JSON, default=list)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_slot: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why the dispatcher could not trigger it ("" when fine): one bad schedule is shown, not fatal
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16), default=NOTEBOOK, server_default=NOTEBOOK)
    # A job's argv, run in its snapshot (a script's is ["python", SCRIPT, *ARGS]); [] for a notebook
    command: Mapped[list] = mapped_column(JSON, default=list)
    nodes: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # pods of a multi-node job
    # The profile's options as asked ({"image": "minimal"}, {"image--unlisted-choice": "..."}), checked
    profile_options: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")


class Run(Base):
    """One execution of a schedule: one per slot and attempt, enforced by the database."""

    __tablename__ = "scheduler_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "slot", "attempt", name="uq_scheduler_runs_slot"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("scheduler_schedules.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    slot: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")  # why it waits, or how it ended
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set at each start; kept while a run a lost standby gave back waits again: its start was announced
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    kernel_ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    cells_done: Mapped[int] = mapped_column(Integer, default=0)
    cells_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # cell index, ename, evalue, traceback
    outcome: Mapped[str] = mapped_column(String(16), default="")  # what the runner reported: COMPLETED or FAILED
    claim_id: Mapped[str] = mapped_column(String(32), default="")
    devices: Mapped[list] = mapped_column(JSON, default=list)
    executor_ref: Mapped[str] = mapped_column(String(255), default="")  # pid:ticks locally, a Job name on Kubernetes
    token_hash: Mapped[str] = mapped_column(String(64), default="")
    idempotency_token: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    mlflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    outputs: Mapped[list] = mapped_column(JSON, default=list)  # stored file names: output.ipynb, output.html, log.txt
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a job's command, as it exited
    artifacts: Mapped[list] = mapped_column(JSON, default=list)  # a job's files from outputs/, relative paths
