"""Hub users and project groups mirrored into MLflow's permission store.

Every hub user MLflow sees becomes an MLflow user of the same name (hub admins are MLflow
admins). Each project group, e.g. `project:vision:editor`, is an MLflow role of the same
name; a user holds exactly the project roles their hub groups say. A project experiment is
granted to its project's roles: viewers READ, editors EDIT, maintainers MANAGE. Nobody
signs in to MLflow with a password: the random one each account gets is never used.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Callable

from gpulab.extensions.projects.membership import ROLES, parse_project_group, project_group

from .identity import Identity

log = logging.getLogger("gpulab.mlflow")

PROJECT_PERMISSIONS = {"viewer": "READ", "editor": "EDIT", "maintainer": "MANAGE"}
EXPERIMENT = "experiment"


def project_groups(groups: frozenset[str]) -> frozenset[str]:
    return frozenset(g for g in groups if parse_project_group(g) is not None)


class Accounts:
    """Keeps MLflow's users and role assignments in step with the hub (cheap when nothing changed)."""

    def __init__(self, store, workspace: str, on_change: Callable[[str], None] = lambda name: None):
        self.store = store  # mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore
        self.workspace = workspace
        self.on_change = on_change  # called with a user's name after their account or roles changed
        self._synced: dict[str, tuple[bool, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def sync(self, identity: Identity) -> None:
        state = (identity.admin, project_groups(identity.groups))
        if self._synced.get(identity.name) == state:
            return
        with self._lock:
            if self._synced.get(identity.name) == state:
                return
            user = self._ensure_user(identity)
            self._sync_roles(user.id, state[1])
            self._synced[identity.name] = state
        self.on_change(identity.name)

    def _ensure_user(self, identity: Identity):
        from mlflow.exceptions import MlflowException

        if not self.store.has_user(identity.name, use_primary=True):
            try:
                self.store.create_user(identity.name, secrets.token_urlsafe(24), is_admin=identity.admin)
                log.info("MLflow account for hub user %s created%s", identity.name, " (admin)" if identity.admin else "")
            except MlflowException:
                if not self.store.has_user(identity.name, use_primary=True):  # not a concurrent create
                    raise
        user = self.store.get_user(identity.name)
        if user.is_admin != identity.admin:
            user = self.store.update_user(identity.name, is_admin=identity.admin)
        return user

    def _sync_roles(self, user_id: int, wanted: frozenset[str]) -> None:
        held = {role.name: role for role in self.store.list_user_roles(user_id)
                if parse_project_group(role.name) is not None}
        for name in sorted(wanted - held.keys()):
            self.store.assign_role_to_user(user_id, self.project_role(name).id)
        for name in sorted(held.keys() - wanted):
            self.store.unassign_role_from_user(user_id, held[name].id)

    def project_role(self, group: str):
        """The MLflow role for a project group, created on first use."""
        from mlflow.exceptions import MlflowException

        try:
            return self.store.get_role_by_name(self.workspace, group)
        except MlflowException:
            pass
        try:
            return self.store.create_role(group, self.workspace, description="gpulab project group")
        except MlflowException:  # created meanwhile by another request
            return self.store.get_role_by_name(self.workspace, group)

    def give_to_project(self, slug: str, experiment_id: str, creator: str) -> None:
        """Grant a new experiment to its project's roles; the creator keeps only their project role."""
        from mlflow.exceptions import MlflowException

        for role in ROLES:
            self.store.add_role_permission(
                self.project_role(project_group(slug, role)).id, EXPERIMENT, experiment_id, PROJECT_PERMISSIONS[role]
            )
        try:
            self.store.revoke_user_resource_permission(creator, EXPERIMENT, experiment_id)
        except MlflowException:
            pass  # an admin's creation leaves no personal grant
