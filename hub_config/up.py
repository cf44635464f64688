"""`gpulab up`: validate, prepare the data directory and database, print how to sign in, run the hub."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import psutil
from traitlets.config import Config

from gpulab.db import database_url
from gpulab.db.core import DATABASE_FILE, database_folder, move_database_into_its_folder
from gpulab.db.own_database import give_to_folder_owner
from gpulab.db.migrate import upgrade
from gpulab.extensions.projects.database import upgrade_projects_storage
from gpulab.extensions.ssh.storage import upgrade_ssh_storage
from gpulab.hub_config.services.config import MAX_SOCKET_PATH, listening_services, too_long_helper_sockets
from gpulab.spawner.backends.local.spawner import NO_ISOLATION_WARNING, singleuser_bin_dir, unrunnable_message, unrunnable_server

from . import __version__
from .apply import apply_config
from .urls import public_url
from .datadir import prepare_data_dir
from .launch import hub_config_file, hub_environment
from .ports import planned_listeners, unavailable_port
from .settings import ConfigError, LoadedSettings, load_settings, parse_yaml, plain
from .typed_settings import Settings

NOBODY = 65534


def command_line_overrides(args, settings_file: Path | None) -> dict:
    """Settings from `gpulab up`'s flags, as a partial settings document."""
    hub: dict = {}
    if args.ip is not None:
        hub["ip"] = args.ip
    if args.port is not None:
        hub["port"] = args.port
    if args.data_dir is not None:
        hub["data_dir"] = str(Path(args.data_dir).resolve())
    overrides: dict = {"hub": hub} if hub else {}
    if args.admin:
        existing = []
        if settings_file is not None:
            existing = plain(parse_yaml(settings_file.read_text(), str(settings_file))).get("auth", {})
            existing = existing.get("admin_users", []) if isinstance(existing, dict) else []
        if isinstance(existing, list):
            admins = existing + [name for name in args.admin if name not in existing]
            overrides["auth"] = {"admin_users": admins}
    return overrides


def find_settings_file(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    default = Path("gpulab.yaml")
    return default if default.exists() else None


def banner(loaded: LoadedSettings) -> str:
    s = loaded.settings
    auth = s.auth
    lines = [
        f"gpulab {__version__}",
        f"  settings: {loaded.source.resolve() if loaded.source else 'defaults (no gpulab.yaml here)'}",
        f"  data:     {loaded.data_dir}",
        f"  open:     {public_url(s)}",
    ]
    if auth.type == "local":
        if auth.admin_users:
            password_file = loaded.data_dir / "initial-admin-password"
            lines.append(
                f"  sign in:  as {', '.join(auth.admin_users)}; a new admin's first password is written to "
                f"{password_file} (change it at {public_url(s)}hub/change-password)"
            )
        else:
            lines.append("  sign in:  no admin yet; restart with --admin NAME to create one")
    else:
        lines.append(f"  sign in:  through {auth.type}; admins: {', '.join(auth.admin_users) or 'from admin_groups'}")
    if os.geteuid() != 0:
        lines.append("WARNING: " + NO_ISOLATION_WARNING % os.environ.get("USER", "this user"))
    return "\n".join(lines)


def unrunnable_servers(s: Settings) -> str | None:
    """Why no user's account could run a server, or None (as root, local backend). An
    environment without jupyterhub-singleuser is left to the spawn, which names it."""
    if os.geteuid() != 0 or s.spawner.backend != "local":
        return None
    bin_dir = singleuser_bin_dir(s.spawner.local.python)
    if not (bin_dir / "jupyterhub-singleuser").exists():
        return None
    problem = unrunnable_server(bin_dir, NOBODY, [NOBODY])
    return unrunnable_message("user servers run under their own accounts, and an account", *problem) if problem else None


def missing_engine(s: Settings) -> str | None:
    """Why the docker backend cannot start servers (no engine answers), or None."""
    if s.spawner.backend != "docker":
        return None
    from gpulab.spawner.backends.docker.spawner import engine_problem  # docker-py only where the backend is used

    return engine_problem(s.spawner.docker.host)


def missing_proxy(s: Settings) -> str | None:
    """Why the configured proxy cannot start, or None. traefik comes with gpulab; CHP needs Node.js.

    A proxy that runs apart (proxy.api_url, e.g. the Helm chart's Deployment) is not started here.
    """
    if s.proxy.api_url:
        return None
    if s.proxy.kind == "configurable-http-proxy" and not shutil.which("configurable-http-proxy"):
        return ("proxy.kind is configurable-http-proxy, but it is not installed: "
                "`npm install -g configurable-http-proxy`, or use the default proxy.kind: traefik")
    return None


def taken_port(s: Settings, planned: Config) -> str | None:
    """A port the hub, its proxy or its services would listen on that is taken, or that two
    of them share, as one line naming it and the setting to change; None when all are free.
    `planned`: apply_config's result for `s`."""
    return unavailable_port(planned_listeners(s, listening_services(planned)))


def too_long_socket(planned: Config) -> str | None:
    """Why a root helper could not listen on its Unix socket (a data directory too long for
    Linux's 107 bytes), or None. Only a root hub starts the helpers. `planned`: apply_config's result."""
    if os.geteuid() != 0:
        return None
    for name, path in too_long_helper_sockets(planned):
        return (f"the {name} helper's socket {path} is {len(os.fsencode(path))} bytes, and a Unix socket's path "
                f"takes at most {MAX_SOCKET_PATH}: choose a shorter hub.data_dir")
    return None


def clear_stale_proxy(proxy_dir: Path) -> None:
    """Undo what a crashed hub left: its proxy process and the proxy's files.

    A clean shutdown stops traefik and deletes its files. After a crash (SIGKILL, OOM) the
    old dynamic configuration still holds the previous run's API password, which locks the
    new hub out of its own proxy; the hub writes every file and route again at start-up.
    A crashed hub's configurable-http-proxy (its pid file) goes too, as JupyterHub would stop
    it later: before the port check, so its ports count as free.
    """
    marker = str(proxy_dir / "traefik.toml")
    for process in psutil.process_iter(["cmdline"]):
        if marker in (process.info["cmdline"] or []) or _is_stale_chp(process, proxy_dir / "chp.pid"):
            process.terminate()
            try:
                process.wait(10)
            except psutil.TimeoutExpired:
                process.kill()
    for name in ("traefik.toml", "rules.toml"):
        (proxy_dir / name).unlink(missing_ok=True)


def _is_stale_chp(process: psutil.Process, pid_file: Path) -> bool:
    try:
        recorded = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    # a pid is reused: it must still be a configurable-http-proxy
    return process.pid == recorded and any("configurable-http-proxy" in part for part in process.info["cmdline"] or [])


def upgrade_state(s: Settings) -> None:
    """gpulab's databases at the current schema, and the rows of services with their own database
    moved there (as root: the SSH gateway's and the projects service's accounts cannot read
    gpulab's database)."""
    move_database_into_its_folder(s)
    upgrade(database_url(s))
    if not s.database.url:  # root wrote them; the folder's owner (the scheduler's account) keeps them
        give_to_folder_owner(database_folder(s), [DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"])
    upgrade_ssh_storage(s)
    upgrade_projects_storage(s)


def run_up(args) -> int:
    settings_file = find_settings_file(args.config)
    try:
        overrides = command_line_overrides(args, settings_file)
        settings = load_settings(settings_file, overrides)
    except ConfigError as exc:
        print(f"gpulab: not starting, the settings are invalid:\n{exc}", file=sys.stderr)
        return 2
    s = settings.settings
    missing = missing_proxy(s) or unrunnable_servers(s) or missing_engine(s)
    if missing:
        print(f"gpulab: not starting: {missing}", file=sys.stderr)
        return 1
    clear_stale_proxy(settings.data_dir / "proxy")
    planned = apply_config(s, Config())  # the services the hub will start, once
    taken = taken_port(s, planned) or too_long_socket(planned)
    if taken:
        print(f"gpulab: not starting: {taken}", file=sys.stderr)
        return 1
    prepare_data_dir(s)
    upgrade_state(s)
    print(banner(settings), flush=True)

    os.environ.update(hub_environment(settings_file, overrides))
    # The proxy and the servers' tools come from the environment gpulab runs in.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    from .hub_app import GpulabHub  # stock JupyterHub, its services started together

    # JupyterHub handles SIGTERM only once start-up is complete; before that, exit
    # normally so the proxy we started is not left holding the port.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        GpulabHub.launch_instance(["-f", str(hub_config_file())])
    finally:
        _stop_proxy_left_running(GpulabHub.instance())
    return 0


# How long an early SIGTERM may take to unwind before gpulab ends the process itself.
EARLY_EXIT_GRACE = 12.0


def _exit_on_sigterm(signum, frame):
    # SystemExit unwinds from wherever start-up was, and the `finally` in run_up stops the
    # proxy; but the interpreter then waits for non-daemon threads (a blocking call in
    # the default executor), so a watchdog bounds the whole exit.
    from .hub_app import GpulabHub

    def force_exit():
        _stop_proxy_left_running(GpulabHub.instance(), kill=True)
        os._exit(128 + signum)

    watchdog = threading.Timer(EARLY_EXIT_GRACE, force_exit)
    watchdog.daemon = True
    watchdog.start()
    raise SystemExit(128 + signum)


def _stop_proxy_left_running(app, kill: bool = False) -> None:
    proxy = getattr(app, "proxy", None)
    process = getattr(proxy, "traefik_process", None) or getattr(proxy, "proxy_process", None)
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
        return
    process.terminate()
    try:
        process.wait(10)
    except Exception:  # noqa: BLE001 - still running (or the wait was interrupted): it must not outlive us
        process.kill()
