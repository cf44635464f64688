"""Scheduled runs as MLflow runs: the variables that let a run's runner log to the hub's MLflow.

The runner signs in to MLflow as the schedule's owner with a token the scheduler asks the hub
for: scoped to the MLflow service only, and expiring shortly after the run's own timeout.
MLflow's permission model then treats the run like its owner: a project schedule logs to an
experiment of the project (which needs the owner's editor role there), a personal one to a
private experiment.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from gpulab.hub_config.client import AsyncHubClient, ClientError

TOKEN_SCOPES = ["access:services!service=mlflow"]
TOKEN_MARGIN_SECONDS = 600  # the runner logs after the notebook ends, and a retry may start late


def experiment_name(schedule_name: str, owner: str, project: str | None, kind: str = "notebook") -> str:
    """Where a schedule's runs go: `<project>/...` is the project's (see mlflow.naming), else private.
    Jobs (scripts, commands) go to `job: NAME`, notebooks to `scheduled: NAME`."""
    label = "scheduled" if kind == "notebook" else "job"
    if project:
        return f"{project}/{label}: {schedule_name}"
    return f"{label}: {schedule_name} ({owner})"


class MlflowForRuns:
    def __init__(self, hub: AsyncHubClient, tracking_uri: str, log: logging.Logger):
        self.hub = hub
        self.tracking_uri = tracking_uri
        self.log = log

    async def environment(self, owner: str, schedule_name: str, project: str | None, timeout_seconds: int,
                          kind: str = "notebook") -> dict:
        """MLFLOW_* variables for one run; none (the run goes on untracked) if the hub refuses a token."""
        body = {"scopes": TOKEN_SCOPES, "expires_in": timeout_seconds + TOKEN_MARGIN_SECONDS,
                "note": f"gpulab scheduled run of {schedule_name!r}: MLflow logging"}
        try:
            model = await self.hub.request("POST", f"users/{quote(owner, safe='')}/tokens", body)
        except ClientError as error:
            self.log.warning("no MLflow token for %s's run of %r: %s", owner, schedule_name, error)
            return {}
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_TRACKING_TOKEN": model["token"],
                "MLFLOW_EXPERIMENT_NAME": experiment_name(schedule_name, owner, project, kind)}
