"""What the warm-start and warm-kernel tests read of a user's processes on this machine."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import psutil

from gpulab.spawner.accounts import account_name
from tests.support.hub import wait_for
from tests.support.kernels import run_in_kernel


def account(hub, user: str) -> pwd.struct_passwd:
    return pwd.getpwnam(account_name(user, hub.settings["spawner"]["local"]["account_prefix"]))


def processes_of(hub, user: str, word: str) -> list[psutil.Process]:
    """The user's account's live processes with `word` in their command line."""
    uid = account(hub, user).pw_uid
    return [p for p in psutil.process_iter(["uids", "cmdline", "status"]) if p.info["uids"].real == uid
            and p.info["status"] != psutil.STATUS_ZOMBIE and any(word in part for part in p.info["cmdline"] or [])]


def server_process(hub, user: str) -> psutil.Process:
    found = processes_of(hub, user, "jupyterhub-singleuser")
    assert len(found) == 1, found
    return found[0]


def in_kernel(hub, user: str, code: str) -> dict:
    """The JSON the code's last line prints, run in a new kernel of the user's server."""
    return json.loads(run_in_kernel(hub, user, code, hub.user_token(user)).strip().splitlines()[-1])


def all_ended(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def left_of(hub, user: str) -> list[psutil.Process]:
    """Whatever the user's account still runs."""
    uid = account(hub, user).pw_uid
    return [p for p in psutil.process_iter(["uids", "status"])
            if p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE]


def proc_status(pid: int) -> dict[str, list[str]]:
    """/proc/PID/status as name -> its values."""
    return {line.split(":")[0]: line.split(":")[1].split() for line in Path(f"/proc/{pid}/status").read_text().splitlines()}


def descriptors(pid: int) -> dict[int, str]:
    """The process's open descriptors and what each points at."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while listed
            continue
    return targets


def stop_and_expect_nothing_left(hub, user: str, started: list[psutil.Process], what: str) -> None:
    """Stop the user's server: each of `started` ends within 10 s, and the account runs nothing."""
    hub.stop_server(user)
    wait_for(lambda: all_ended(started), 10, what)
    assert not left_of(hub, user)
