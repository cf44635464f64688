"""The local backend: each user server is a process on this machine.

As root, every hub user gets a system account (see accounts.py) and their server runs
under its uid/gid in a private home. As an ordinary user there is no isolation: every
server runs as that user, in a per-hub-user folder, and the spawner says so loudly.

As root, a server starts warm by default (`warm_start`, see warm_start.py): forked from a
process that has the server imported, instead of a new `jupyterhub-singleuser` process
(cold). This module only chooses between the two; whatever the warm path cannot do starts
the server cold, with a line in the log saying why. Either way the server is known by its
pid and start ticks, so poll and stop treat both alike, also after a hub restart.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import stat
import sys
from pathlib import Path

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Float, Integer, Unicode

from gpulab.compute.limits import Limits, detect_limiter
from gpulab.compute.processes import ended, start_ticks
from gpulab.spawner.profile_spawner import ProfileSpawnerMixin

from gpulab.spawner.accounts import AccountError, account_name, ensure_account, home_of
from gpulab.spawner.errors import SpawnError
from gpulab.spawner.hub_shared import shared_value
from gpulab.spawner.backends.local.identity import become_step
from gpulab.spawner.progress import ProgressMixin
from gpulab.spawner.server_ports import server_port
from gpulab.spawner.runtime_dir import KERNEL_TRANSPORT_ARGS, RUNTIME_VARIABLE, ensure_runtime_dir, runtime_dir_of
from gpulab.spawner.stopping import descendants, kill_all
from gpulab.spawner.backends.local.warm_start import (ENTRY_POINT, SpawnRequest, WarmStartError, Zygote, cold_reason, extensions_enabled_by,
                         interpreter_of, language_kept)

NO_ISOLATION_WARNING = (
    "gpulab is not running as root: every user's server runs as %s, with no isolation "
    "between users. Run gpulab as root for one system account per user."
)


def singleuser_bin_dir(python: str) -> Path:
    """The bin folder of the Python environment servers run from ("" = gpulab's own)."""
    if not python:
        return Path(sys.executable).parent
    path = Path(python)
    if path.is_dir():
        return path / "bin" if (path / "bin").is_dir() else path
    return path.parent


def first_unreachable(path: Path, uid: int, gids: list[int]) -> Path | None:
    """The first folder (or the program itself) on the way to `path` that uid/gids cannot enter or run."""
    for folder in [*reversed(path.parents), path]:
        try:
            info = os.stat(folder)
        except OSError:
            return folder
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


def server_programs(bin_dir: Path) -> list[Path]:
    """What starting a server runs: jupyterhub-singleuser, the interpreter its #! line names, and
    where that interpreter's links lead (a venv's python often links into its creator's home)."""
    script = bin_dir / "jupyterhub-singleuser"
    programs = [script]
    try:
        first_line = script.open("rb").readline()
    except OSError:
        return programs
    if first_line.startswith(b"#!/"):
        programs += _link_chain(Path(first_line[2:].split()[0].decode(errors="replace")))
    return programs


def _link_chain(path: Path, max_hops: int = 40) -> list[Path]:
    """`path` and every place its links lead through, hop by hop (each hop must be reachable)."""
    chain = [path]
    while path.is_symlink() and len(chain) <= max_hops:
        target = Path(os.readlink(path))
        path = target if target.is_absolute() else path.parent / target
        chain.append(Path(os.path.normpath(path)))
    return chain


def unrunnable_server(bin_dir: Path, uid: int, gids: list[int]) -> tuple[Path, Path] | None:
    """(program, the folder or file in its way) when uid/gids cannot run a server from bin_dir."""
    for program in server_programs(bin_dir):
        blocked = first_unreachable(program, uid, gids)
        if blocked is not None:
            return program, blocked
    return None


def unrunnable_message(who: str, program: Path, blocked: Path) -> str:
    return (f"{who} cannot run {program}: {blocked} is not open to other users. Install gpulab's environment "
            "where every account can read it (./gpulab does, under /opt/gpulab, when the checkout is private; "
            "a venv made from a Python under /root links into /root: make it from /usr/bin/python3), or set "
            "spawner.local.python to such an environment")


class LocalSpawner(ProgressMixin, LocalProcessSpawner):
    """Starts `jupyterhub-singleuser` as a local process, as the user's own account."""

    popen_kwargs: dict  # (LocalProcessSpawner's trait)

    account_prefix = Unicode(
        "gpulab-",
        help="""Prefix of the system account of each hub user (as root). Default "gpulab-":
        hub user "alice" runs as "gpulab-alice".""",
    ).tag(config=True)

    home_root = Unicode(
        "",
        help="""Folder holding the users' homes. Default "": /home as root,
        <data_dir>/homes otherwise. Example "/srv/homes".""",
    ).tag(config=True)

    python = Unicode(
        "",
        help="""Python environment servers run from (its folder or its python). Default "":
        gpulab's own. Example "/opt/conda/envs/ml".""",
    ).tag(config=True)

    data_dir = Unicode("", help="gpulab's data directory. Default \"\" (the working directory).").tag(
        config=True
    )

    log_dir = Unicode(
        "",
        help="""Folder for each server's output, one file per server. Default "" (the hub's own
        output). Example "/srv/gpulab/.gpulab/logs/servers".""",
    ).tag(config=True)

    process_start_ticks = Integer(
        0, help="Start of the server process in clock ticks since boot: tells it apart from a later one with its pid."
    )

    stop_grace = Float(
        2.0,
        help="""Seconds a stopping server gets after SIGTERM to save what it holds (collaborative
        documents) before it is killed; its kernels and what they started are killed at once.
        Default 2.""",
    ).tag(config=True)

    warm_start = Bool(
        True,
        help="""Start servers from a per-environment zygote that has imported the server once and
        forks a child per spawn, which becomes the user's account (see warm_start.py); any spawn
        it cannot serve starts cold, as `jupyterhub-singleuser` in a new process. Default True.""",
    ).tag(config=True)

    @property
    def isolated(self) -> bool:
        return os.geteuid() == 0

    @property
    def account(self) -> str:
        if self.isolated:
            return account_name(self.user.name, self.account_prefix)
        return psutil.Process().username()

    @property
    def home(self) -> Path:
        if self.isolated:
            return home_of(self.account, Path(self.home_root or "/home"))
        root = Path(self.home_root or Path(self.data_dir or ".", "homes"))
        return root / account_name(self.user.name, "")

    # ------------------------------------------------------------ start

    def server_python(self) -> str:
        """The Python environment this spawn runs from (a subclass may choose per spawn)."""
        return self.python

    def resource_limits(self) -> Limits:
        """CPU and memory limits for this spawn (none unless a subclass sets them)."""
        return Limits()

    async def start(self):
        self.emit_progress(10, "Preparing your account")
        try:
            await self._prepare_home()
        except AccountError as exc:
            raise SpawnError(f"Cannot start a server for {self.user.name}: {exc}") from None
        bin_dir = singleuser_bin_dir(self.server_python())
        self._check_environment(bin_dir)
        # `jupyterhub-singleuser` is found on the server's PATH, which starts with bin_dir
        # (see user_env); self.cmd is never changed, so no spawn inherits another's environment.
        self._cgroups = self._apply_limits()
        self._redirect_output()
        self.emit_progress(40, "Starting the server")
        if not self.port:  # (LocalProcessSpawner's random_port() would pick one in the ephemeral range)
            self.port = server_port()
        try:
            started = await self._start_warm(bin_dir) if self.warm_start else None
            if started is None:
                started = await super().start()
                self.process_start_ticks = start_ticks(self.pid) or 0
        finally:
            self._close_output()
        ip, port = started
        self.emit_progress(70, "Waiting for JupyterLab to answer")
        await self._wait_until_listening(ip, port)
        return ip, port

    async def _wait_until_listening(self, ip: str, port: int) -> None:
        """Return as soon as the server accepts connections; fail clearly if it exits first.

        JupyterHub's own readiness check backs off exponentially (0.2 s, 0.4 s, ... 1.6 s),
        so a server that is up after 2.5 s is noticed at about 3 s or 5 s; polling here
        every 50 ms lets its first check succeed.
        """
        while True:
            status = self._exit_status()
            if status is not None:
                raise SpawnError(f"The server exited with status {status} while starting. {self._output_tail()}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout=1)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return

    async def _start_warm(self, bin_dir: Path) -> tuple[str, int] | None:
        """Fork the server from its environment's zygote: (ip, port), or None to start it cold
        (the reason is logged)."""
        port = int(self.port)
        cmd = [*self.cmd, *self.get_args()]
        env = self.get_env()
        python = interpreter_of(bin_dir / ENTRY_POINT)
        if not self.isolated:
            reason: str | None = "gpulab is not running as root (every server runs as its user anyway)"
        elif python is None:
            reason = f"{bin_dir / ENTRY_POINT} does not start with one Python interpreter (#!)"
        elif os.path.isabs(cmd[0]) and Path(cmd[0]) != bin_dir / ENTRY_POINT:
            reason = f"the command {cmd[0]} is not {bin_dir / ENTRY_POINT}"
        else:
            reason = cold_reason(cmd, self.shell_cmd, env)
        if reason is not None or python is None:
            self.log.info("Starting %s cold: %s", self._log_name, reason)
            return None
        request = SpawnRequest(tuple(cmd), env, self.account, str(self.home),  # isolated: checked above
                               tuple(str(folder) for folder in getattr(self, "_cgroups", [])))
        output = self._output.fileno() if self._output is not None else 1
        errors = self._output.fileno() if self._output is not None else 2
        try:
            self.pid, self.process_start_ticks = await self._zygote(python, bin_dir, cmd).spawn(request, output, errors)
        except WarmStartError as exc:
            self.log.warning("Starting %s cold: %s", self._log_name, exc)
            return None
        self.proc = None
        self.log.info("Started %s warm from the zygote of %s: pid %i", self._log_name, python, self.pid)
        return (self.ip or "127.0.0.1", port)

    def prewarm(self) -> None:
        """Start the zygote of this spawner's default environment in the background, so the spawn
        that follows (the user is looking at the spawn form) finds it ready instead of paying for
        its start. Nothing when servers start cold; a zygote that cannot start says so at the spawn."""
        if not (self.warm_start and self.isolated):
            return
        bin_dir = singleuser_bin_dir(self.server_python())
        python = interpreter_of(bin_dir / ENTRY_POINT)
        if python is None:
            return
        zygote = self._zygote(python, bin_dir, [*self.cmd, *self.get_args()])
        if zygote.running() or zygote.failure:
            return
        # its outcome is kept in the zygote (failure, process); the task's own result is not needed
        asyncio.ensure_future(zygote.ensure_started()).add_done_callback(lambda task: task.exception())

    def _zygote(self, python: str, bin_dir: Path, cmd: list[str]) -> Zygote:
        """The hub's zygote for this environment's entry point run by `python`, made on first use
        with the server extensions that spawn's arguments enable; kept with the hub (hub_shared)."""
        entry_point = str(bin_dir / ENTRY_POINT)
        return shared_value(self, ("zygote", entry_point, python),
                            lambda: Zygote(python, entry_point, tuple(extensions_enabled_by(cmd)),
                                           language=language_kept(dict(os.environ), list(self.env_keep))))

    def _exit_status(self) -> int | None:
        """None while the server runs; its exit status (1 for a forked one, whose parent is the zygote) once not."""
        if self.proc is not None:
            return self.proc.poll()
        return None if self._alive() else 1

    def _alive(self) -> bool:
        """Whether the server's pid is still the process that started at its start ticks, and not a zombie."""
        return not ended(self.pid, self.process_start_ticks or None)

    def _output_tail(self, lines: int = 5) -> str:
        if self._output is None:
            return "Its output went to the hub's log."
        text = Path(self._output.name).read_text(errors="replace").strip().splitlines()
        return "Last lines of its output: " + " | ".join(text[-lines:])

    async def _prepare_home(self) -> None:
        if self.isolated:
            entry = await ensure_account(self.account, Path(self.home_root or "/home"))
            ensure_runtime_dir(entry.pw_uid, entry.pw_gid)
        else:
            self.log.warning(NO_ISOLATION_WARNING, self.account)
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _check_environment(self, bin_dir: Path) -> None:
        server = bin_dir / "jupyterhub-singleuser"
        if not server.exists():
            raise SpawnError(
                f"spawner.local.python: {bin_dir} has no jupyterhub-singleuser; install jupyterhub "
                "and jupyterlab into that environment"
            )
        if self.isolated:
            entry = pwd.getpwnam(self.account)
            problem = unrunnable_server(bin_dir, entry.pw_uid, os.getgrouplist(self.account, entry.pw_gid))
            if problem is not None:
                raise SpawnError(unrunnable_message(f"{self.user.name}'s account {self.account}", *problem))

    def _redirect_output(self) -> None:
        self._output = None
        if not self.log_dir:
            return
        Path(self.log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        name = self.account + (f"-{self.name}" if self.name else "")
        self._output = open(Path(self.log_dir, f"{name}.log"), "ab")
        self.popen_kwargs = {**self.popen_kwargs, "stdout": self._output, "stderr": self._output}

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()

    def _apply_limits(self) -> list[Path]:
        limits = self.resource_limits()
        if not limits.any:
            return []
        limiter, enforced = detect_limiter()
        if limiter is None:
            self.log.warning("Limits of %s are not enforced: %s", self._log_name, enforced)
            return []
        return limiter.prepare(self.cgroup_name, limits)

    @property
    def cgroup_name(self) -> str:
        return self.account + (f"-{self.name}" if self.name else "")

    def _remove_limits(self) -> None:
        limiter, _ = detect_limiter()
        if limiter is not None:
            limiter.remove(self.cgroup_name)

    # ------------------------------------------------------------ identity

    def make_preexec_fn(self, name):
        return become_step(self.account if self.isolated else None, str(self.home), getattr(self, "_cgroups", []))

    def get_args(self):
        # Kernels on Unix sockets in the account's private runtime folder (see runtime_dir.py).
        return super().get_args() + (KERNEL_TRANSPORT_ARGS if self.isolated else [])

    def user_env(self, env):
        if self.isolated:
            env[RUNTIME_VARIABLE] = str(runtime_dir_of(pwd.getpwnam(self.account).pw_uid))
        env["USER"] = self.account
        env["HOME"] = str(self.home)
        env["SHELL"] = "/bin/bash"
        bin_dir = str(singleuser_bin_dir(self.server_python()))
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.defpath)
        return env

    # ------------------------------------------------------------ state

    def load_state(self, state):
        super().load_state(state)
        self.process_start_ticks = state.get("process_start_ticks", 0)

    def get_state(self):
        state = super().get_state()
        if self.pid:
            state["process_start_ticks"] = self.process_start_ticks
        return state

    def clear_state(self):
        super().clear_state()
        self.process_start_ticks = 0

    async def stop(self, now=False):
        """SIGTERM to the server and SIGKILL to everything it started, at once; the server itself
        is killed after `stop_grace` seconds (stopping.py says why not the stock polite steps)."""
        if await self.poll() is not None:
            return
        # (descendants reads every process's /proc entry: ~3.5 ms for 300 processes here, more on a
        # machine with thousands, so off the hub's event loop)
        started = await asyncio.to_thread(descendants, self.pid)  # before the server exits: its kernels would be re-parented
        await self._signal(signal.SIGTERM)
        kill_all(started)
        await self.wait_for_death(0 if now else self.stop_grace)
        kill_all(await asyncio.to_thread(descendants, self.pid))  # a kernel the server started meanwhile (an auto-restart)
        if await self.poll() is None:
            self.log.debug("Killing %s after %.1f s", self._log_name, self.stop_grace)
            await self._signal(signal.SIGKILL)
            await self.wait_for_death(self.kill_timeout)
            if await self.poll() is None:
                self.log.warning("Process %i of %s never died", self.pid, self._log_name)

    async def poll(self):
        # A forked server (warm start), or any server after a hub restart: only the pid and its
        # start ticks are known; make sure it is still our process, and not a zombie (an orphan
        # whose new parent does not reap it). The state is kept: JupyterHub clears it once it has
        # stopped the server, after a subclass released what the server held (its GPUs' claim).
        if self.proc is None and self.pid and not self._alive():
            return 0
        return await super().poll()


class GpulabLocalSpawner(ProfileSpawnerMixin, LocalSpawner):
    """Profiles and GPUs on this machine: the ledger allocates devices, cgroups enforce limits."""

    def server_python(self) -> str:
        plan = self.spawn_plan
        if plan is not None and plan.environment.local_python:
            return plan.environment.local_python
        return self.python

    def resource_limits(self) -> Limits:
        plan = self.spawn_plan
        return plan.limits if plan is not None else Limits()

    def python_exists(self):
        return lambda python: (singleuser_bin_dir(python) / "jupyterhub-singleuser").exists()

    prewarm = LocalSpawner.prewarm  # the zygote, not the mixin's nothing

    def holder_started(self) -> None:
        if self.claim_id and self.ledger is not None:
            self.ledger.attach(self.claim_id, self.pid, self.process_start_ticks)

    async def stop(self, now=False):
        await super().stop(now=now)
        self._remove_limits()

    async def poll(self):
        status = await super().poll()
        if status is not None:
            self._remove_limits()
        return status
