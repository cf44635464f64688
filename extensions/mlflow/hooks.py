"""Request hooks that add gpulab's rules to MLflow's own permission checks.

They run after MLflow has authenticated and authorized the request:
- a new experiment named `<project>/...` becomes that project's (see naming.py): its
  creation is checked, the `gpulab.project` tag is added to it, and afterwards the project's
  roles are granted on it;
- a rename cannot move an experiment into or out of a project, and the `gpulab.project`
  tag cannot be set or removed by hand;
- a new run is recorded under the hub user, whatever the client claims;
- an experiment cannot choose its artifact location: every experiment keeps its artifacts
  in the server's own store (mlflow-artifacts:/<experiment id>), see artifacts.py;
- a GraphQL request must parse and stay shallow (limits.py) before MLflow parses it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from flask import Flask, Response, g, request

from gpulab.hub_config.services.errors import Invalid, NotAllowed, ServiceError

from .accounts import Accounts
from .limits import graphql_problem
from .naming import PROJECT_TAG, check_rename, project_for_new_experiment

log = logging.getLogger("gpulab.mlflow")

MLFLOW_USER_TAG = "mlflow.user"


class Hooks:
    def __init__(self, static_prefix: str, accounts: Accounts, project_exists: Callable[[str], bool],
                 tracking_store: Callable[[], Any], on_grant: Callable[[], None] = lambda: None):
        self.accounts = accounts
        self.on_grant = on_grant  # grants changed: remembered decisions are stale
        self.project_exists = project_exists
        self.tracking_store = tracking_store  # mlflow.server.handlers._get_tracking_store
        self.routes = {}
        self.graphql_path = static_prefix + "/graphql"
        for api in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
            base = static_prefix + api
            self.routes[base + "/experiments/create"] = self._create_experiment
            self.routes[base + "/experiments/update"] = self._rename_experiment
            self.routes[base + "/experiments/set-experiment-tag"] = self._change_tag
            self.routes[base + "/experiments/delete-experiment-tag"] = self._change_tag
            self.routes[base + "/runs/create"] = self._create_run

    def install(self, app: Flask) -> None:
        # After MLflow's own before-request checks; after MLflow's after-request grants
        # (Flask runs after-request functions in reverse order of registration).
        app.before_request(self.before_request)
        app.after_request_funcs.setdefault(None, []).insert(0, self.after_request)

    # ------------------------------------------------------------ Flask hooks

    def before_request(self) -> Response | None:
        if request.path == self.graphql_path:
            problem = graphql_problem(request.get_json(force=True, silent=True))
            return _error(Invalid(problem)) if problem else None
        hook = self.routes.get(request.path) if request.method == "POST" else None
        identity = g.get("gpulab_identity")
        if hook is None or identity is None:
            return None
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return None  # MLflow answers malformed bodies itself
        try:
            hook(body, identity)
        except ServiceError as exc:
            return _error(exc)
        return None

    def after_request(self, response: Response) -> Response:
        slug = g.pop("gpulab_new_project", None)
        if slug is None or response.status_code != 200:
            return response
        experiment_id = json.loads(response.get_data()).get("experiment_id")
        if experiment_id:
            self.accounts.give_to_project(slug, experiment_id, g.gpulab_identity.name)
            self.on_grant()
            log.info("experiment %s created for project %s by %s", experiment_id, slug, g.gpulab_identity.name)
        return response

    # ------------------------------------------------------------ rules (the body is Flask's cached JSON)

    def _create_experiment(self, body: dict, identity) -> None:
        if body.get("artifact_location"):
            raise Invalid(
                "artifact_location cannot be chosen on this server: every experiment keeps its artifacts "
                "in the hub's MLflow artifact store (mlflow-artifacts:/<experiment id>); leave it out"
            )
        tags = body.get("tags") or []
        if any(isinstance(t, dict) and t.get("key") == PROJECT_TAG for t in tags):
            raise NotAllowed(f"the {PROJECT_TAG} tag is set by gpulab from the experiment's name")
        slug = project_for_new_experiment(str(body.get("name") or ""), identity, self.project_exists)
        if slug is not None:
            body["tags"] = [*tags, {"key": PROJECT_TAG, "value": slug}]
            g.gpulab_new_project = slug

    def _rename_experiment(self, body: dict, identity) -> None:
        new_name = body.get("new_name")
        if not new_name:
            return
        experiment = self.tracking_store().get_experiment(str(body.get("experiment_id")))
        check_rename(experiment.tags.get(PROJECT_TAG), str(new_name), identity, self.project_exists)

    def _change_tag(self, body: dict, identity) -> None:
        if body.get("key") == PROJECT_TAG:
            raise NotAllowed(f"the {PROJECT_TAG} tag is set by gpulab when the experiment is created")

    def _create_run(self, body: dict, identity) -> None:
        body["user_id"] = identity.name
        tags = [t for t in body.get("tags") or [] if not (isinstance(t, dict) and t.get("key") == MLFLOW_USER_TAG)]
        body["tags"] = [*tags, {"key": MLFLOW_USER_TAG, "value": identity.name}]


def _error(exc: ServiceError) -> Response:
    code = {400: "INVALID_PARAMETER_VALUE", 403: "PERMISSION_DENIED"}.get(exc.status, "BAD_REQUEST")
    return Response(json.dumps({"error_code": code, "message": exc.message}), status=exc.status,
                    mimetype="application/json")

