"""The root part of the projects service: project folders, behind a Unix socket.

When the hub runs as root, the projects service (its API, pages, store and hub sync) runs as
its own account, which cannot make system groups, set ACLs, give folders to root or link
into homes. This helper does those four things and nothing else: a small process the hub
starts as root (a managed service without HTTP, `python -m gpulab.extensions.projects.storage.helper`,
started again if it dies), listening on `<data_dir>/projects-storage/storage.sock`.

Who can reach it, and the protocol, are every root helper's (service/root_helper.py). What it
does: exactly the storage operations the service calls (`check_available`, `apply_project`,
`remove_project`, see sync.Storage), each argument
checked here before the file system is touched: the project name against membership.SLUG,
hub user names (text of at most 255 printable characters that maps to a system account),
roles from membership.ROLES, no other keys. Anything else is refused, with the reason.

  {"op": "apply_project", "slug": "vision", "members": {"alice": "maintainer"}}
  -> {"ok": true} | {"conflict": "..."} | {"refused": "..."} | {"failed": "..."}

`HelperStorage` is the service's side: the same methods as LocalStorage, sent here. When the
hub is not root, the service runs as the hub's user and uses LocalStorage in-process instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpulab.hub_config.services import root_helper
from gpulab.hub_config.services.root_helper import Refused, check_user
from gpulab.hub_config.services.errors import Conflict

from ..membership import ROLES, SLUG
from ..service_settings import StorageHelperSettings

log = logging.getLogger("gpulab.projects.storage")

HELPER_NAME = "projects storage helper"
FOLDER = "projects-storage"
SOCKET = "storage.sock"
MAX_MEMBERS = 100_000
# The arguments each operation takes, besides "op".
OPERATIONS = {
    "check_available": ("slug",),
    "apply_project": ("slug", "members"),
    "remove_project": ("slug", "users"),
}


class StorageHelperError(root_helper.HelperError):
    """The helper could not be reached, or failed to carry out a request."""


def socket_path(data_dir: str) -> Path:
    return Path(data_dir, FOLDER, SOCKET)


# ------------------------------------------------------------ checks (pure)


def check_slug(value) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise Refused(f"not a project name: {value!r}")
    return value


def check_request(request, account_prefix: str) -> tuple[str, tuple]:
    """(operation, arguments) of a well-formed request; raises Refused otherwise."""
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise Refused("a request is a JSON object with an \"op\"")
    op = request["op"]
    if op not in OPERATIONS:
        raise Refused(f"unknown operation {op!r}; the helper offers {', '.join(OPERATIONS)}")
    expected = {"op", *OPERATIONS[op]}
    if set(request) != expected:
        raise Refused(f"{op} takes exactly {', '.join(OPERATIONS[op])}; got {', '.join(sorted(set(request) - {'op'}))}")
    slug = check_slug(request["slug"])
    if op == "check_available":
        return op, (slug,)
    if op == "apply_project":
        members = request["members"]
        if not isinstance(members, dict) or len(members) > MAX_MEMBERS:
            raise Refused("members is an object of hub user name -> role")
        for user, role in members.items():
            check_user(user, account_prefix)
            if role not in ROLES:
                raise Refused(f"unknown role {role!r} for {user!r}; expected one of {', '.join(ROLES)}")
        return op, (slug, dict(members))
    users = request["users"]
    if not isinstance(users, list) or len(users) > MAX_MEMBERS:
        raise Refused("users is a list of hub user names")
    return op, (slug, [check_user(user, account_prefix) for user in users])


def answer(storage, request, account_prefix: str) -> dict:
    """Carry out one request on `storage` (LocalStorage), or say why not."""
    try:
        op, arguments = check_request(request, account_prefix)
    except Refused as refused:
        log.warning("refused a request: %s", refused)
        return {"refused": str(refused)}
    try:
        getattr(storage, op)(*arguments)
    except Conflict as conflict:
        return {"conflict": conflict.message}
    except Exception as error:
        log.exception("%s %s failed", op, arguments[0])
        return {"failed": f"{op} {arguments[0]}: {error}"}
    return {"ok": True}


# ------------------------------------------------------------ the helper (root) and the service's side


def serve(given: StorageHelperSettings | Mapping[str, Any]) -> None:
    from .local import storage_from_settings

    settings = StorageHelperSettings.of(given)
    storage = storage_from_settings(settings.storage)
    prefix = settings.storage.account_prefix
    root_helper.serve(Path(settings.socket), settings.client, HELPER_NAME,
                      lambda request, _fds: answer(storage, request, prefix))


class HelperStorage:
    """sync.Storage through the helper (the service, as its own account)."""

    def __init__(self, path: Path | str, wait: float = 30.0, timeout: float = 600.0):
        # timeout: seconds one operation may take (a big folder's ACLs)
        self.client = root_helper.HelperClient(path, HELPER_NAME, wait=wait, timeout=timeout)

    def check_available(self, slug: str) -> None:
        self.call({"op": "check_available", "slug": slug})

    def apply_project(self, slug: str, members: dict[str, str]) -> None:
        self.call({"op": "apply_project", "slug": slug, "members": members})

    def remove_project(self, slug: str, members: list[str]) -> None:
        self.call({"op": "remove_project", "slug": slug, "users": list(members)})

    def call(self, request: dict) -> dict:
        reply = self.send(request)
        if "conflict" in reply:
            raise Conflict(reply["conflict"])
        if not reply.get("ok"):
            raise StorageHelperError(reply.get("refused") or reply.get("failed") or f"unexpected answer {reply!r}")
        return reply

    def send(self, request: dict) -> dict:
        try:
            return self.client.send(request)
        except root_helper.HelperError as error:
            raise StorageHelperError(str(error)) from None


def main() -> None:
    from gpulab.hub_config.services.lifetime import end_with_hub
    from gpulab.hub_config.services.runner import configure_logging, service_settings

    end_with_hub()
    settings = StorageHelperSettings.of(service_settings())
    configure_logging("projects-storage", settings.log_level)
    serve(settings)


if __name__ == "__main__":
    main()
