"""`gpulab down --purge`: undo an install on one machine.

What gpulab made is found from the settings and from the marks gpulab leaves: system accounts
carry gpulab's comment (spawner.accounts.MANAGED_MARKER, or service_account.MARKER for a
service's own) and the configured prefix, project
groups the project group prefix and an -rw/-ro suffix, the projects root gpulab's lock file.
Users' homes are kept unless asked, since they hold people's work.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpulab.extensions.projects.config import group_prefix
from gpulab.extensions.projects.storage.local import LOCK_FILE, default_root
from gpulab.extensions.projects.storage.system_groups import ACCESS_SUFFIXES
from gpulab.hub_config.services.service_account import MARKER as SERVICE_MARKER
from gpulab.hub_config.services.service_account import service_account_name
from gpulab.spawner.accounts import MANAGED_MARKER
from gpulab.spawner.runtime_dir import runtime_dir_of

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from .typed_settings import Settings


class PurgeRefused(Exception):
    """The purge cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class PurgePlan:
    accounts: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    homes: list[Path] = field(default_factory=list)
    remove_homes: bool = False

    def describe(self) -> str:
        lines = []
        if self.accounts:
            lines.append(f"system accounts gpulab created ({len(self.accounts)}), with every process they run:")
            lines += [f"  {name}" for name in self.accounts]
        if self.groups:
            lines.append(f"project groups ({len(self.groups)}):")
            lines += [f"  {name}" for name in self.groups]
        if self.folders:
            lines.append("folders (databases, secrets, logs, MLflow artifacts, run outputs, project files):")
            lines += [f"  {path}" for path in self.folders]
        if self.homes:
            lines.append(("users' homes, REMOVED:" if self.remove_homes else "users' homes, kept (--remove-homes removes them):"))
            lines += [f"  {path}" for path in self.homes]
        return "\n".join(lines) if lines else "nothing: gpulab left nothing here"

    @property
    def empty(self) -> bool:
        return not (self.accounts or self.groups or self.folders or (self.remove_homes and self.homes))


def _is_project_group(name: str, prefix: str) -> bool:
    return bool(prefix) and name.startswith(prefix) and name.rsplit("-", 1)[-1] in ACCESS_SUFFIXES


def plan_purge(s: Settings, remove_homes: bool = False) -> PurgePlan:
    """What a purge of the install described by settings `s` removes (reads the account database
    and the file system, changes nothing)."""
    prefix = s.spawner.local.account_prefix
    services = service_account_name(prefix, "")  # services' own accounts (MLflow's), no homes
    entries = pwd.getpwall()
    users = sorted((e for e in entries if e.pw_gecos == MANAGED_MARKER and e.pw_name.startswith(prefix)),
                   key=lambda e: e.pw_name)
    homes = sorted(Path(e.pw_dir) for e in users if Path(e.pw_dir).is_dir())
    accounts = [e.pw_name for e in users] + sorted(
        e.pw_name for e in entries if e.pw_gecos == SERVICE_MARKER and e.pw_name.startswith(services))
    projects_prefix = group_prefix(s)
    groups = sorted(g.gr_name for g in grp.getgrall() if _is_project_group(g.gr_name, projects_prefix))
    data_dir = Path(s.hub.data_dir)
    folders = [data_dir] if data_dir.is_dir() else []
    projects_root = default_root(s.projects.local.root, str(data_dir), os.geteuid() == 0)
    if (projects_root / LOCK_FILE).exists() and projects_root not in folders and data_dir not in projects_root.parents:
        folders.append(projects_root)
    # The removed accounts' kernel socket folders (others on this machine keep theirs).
    folders += [runtime_dir_of(e.pw_uid) for e in users if runtime_dir_of(e.pw_uid).is_dir()]
    return PurgePlan(accounts, groups, folders, homes, remove_homes)


def hub_listening(s: Settings) -> str | None:
    """The address of a hub of this install that still answers, or None."""
    hub = s.hub
    for port in (hub.port, hub.internal_port):
        host = hub.ip if hub.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
        try:
            with socket.create_connection((host, port), timeout=1):
                return f"{host}:{port}"
        except OSError:
            continue
    return None


def carry_out(plan: PurgePlan) -> list[str]:
    """Remove what the plan lists; returns the problems met (the rest still goes)."""
    problems = []
    for account in plan.accounts:
        # A server outlives the hub: its processes would keep the account's uid in use.
        subprocess.run(["pkill", "-KILL", "-u", account], capture_output=True)
        command = ["userdel", "--force"] + (["--remove"] if plan.remove_homes else []) + [account]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode not in (0, 12):  # 12: the home could not be removed (said below)
            problems.append(f"userdel {account}: {result.stderr.strip() or result.returncode}")
    for group in plan.groups:
        result = subprocess.run(["groupdel", group], capture_output=True, text=True)
        if result.returncode not in (0, 6):  # 6: no such group (a user group userdel took)
            problems.append(f"groupdel {group}: {result.stderr.strip() or result.returncode}")
    for folder in plan.folders:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            problems.append(f"could not remove all of {folder}")
    if plan.remove_homes:
        problems += [f"could not remove {home}" for home in plan.homes if home.exists() and not _remove(home)]
    return problems


def _remove(path: Path) -> bool:
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()
