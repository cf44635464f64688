"""traefik, supervised: restarted by the hub when it dies, with every route back, and run as
its own system account when the hub is root.

The same once-a-second check polls the hub's managed services (see service_watch).

jupyterhub-traefik-proxy starts traefik once and never looks at it again, so a traefik killed
(OOM, kill -9) leaves the hub unreachable, and a defunct child, until someone restarts the hub.
JupyterHub's own `ConfigurableHTTPProxy.check_running` does this for CHP; this is the same for
traefik, without patching either package.

A route added is ready once traefik routes it to its target: jupyterhub-traefik-proxy waits until
traefik has a router and a service of the route's name, which is also true of the route's previous
version (a server stopped and started again on another port) until traefik applies the change.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from urllib.parse import urlparse

import bcrypt
from jupyterhub_traefik_proxy import traefik_utils
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler
from tornado.httpclient import HTTPClientError
from tornado.ioloop import PeriodicCallback
from traitlets import Any, Dict, Float, Unicode, default

from gpulab.hub_config.services.service_account import ServiceAccount, prepare

from .service_watch import ServiceWatch

PRIVILEGED_PORTS = 1024
# bcrypt's cost for the hash of traefik's API password when the hub generated the password
# (32 random bytes: a work factor adds nothing against guessing it). traefik checks the hash
# on every API call, and the hub makes at least two per route it adds: at the default cost (12) each
# took traefik ~0.25 s of CPU, seconds in all when a restart re-adds 20 servers' routes.
GENERATED_PASSWORD_BCRYPT_ROUNDS = 4


def as_account(entry: pwd.struct_passwd, public_url: str) -> list[str]:
    """The prefix that runs a proxy as `entry` (pure): setpriv drops to the account with no other
    groups; a public port below 1024 keeps the one capability that binds it, nothing else."""
    parsed = urlparse(public_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    keep = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"] if port < PRIVILEGED_PORTS else []
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *keep, "--"]


def readable_copy(source: Path, target: Path, entry: pwd.struct_passwd) -> str:
    """A copy of a root-only file (a TLS key) that `entry` alone can read; its path."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(target.parent, entry.pw_uid, entry.pw_gid)
    shutil.copyfile(source, target)
    os.chown(target, entry.pw_uid, entry.pw_gid)
    os.chmod(target, 0o600)
    return str(target)


class OwnedConfigFile(TraefikConfigFileHandler):
    """traefik's dynamic configuration, written atomically as the proxy's account's file:
    jupyterhub-traefik-proxy's temporary file is root's and 0600, which traefik running as
    its own account could not read (and would see before any later chown)."""

    def __init__(self, file_path: str, uid: int, gid: int):
        super().__init__(file_path)
        self.uid, self.gid = uid, gid

    def atomic_dump(self, data) -> None:
        folder = os.path.dirname(os.path.abspath(self.file_path))
        fd, temporary = tempfile.mkstemp(prefix=os.path.basename(self.file_path) + "-tmp-", dir=folder)
        try:
            with os.fdopen(fd, "w") as file:
                self._dump(data, file)
                os.fchown(file.fileno(), self.uid, self.gid)
            os.replace(temporary, self.file_path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


class SupervisedTraefikProxy(TraefikFileProviderProxy):
    """`traefik_file`, plus a watch that restarts traefik and re-adds the hub's routes."""

    ssl_cert: str  # (the proxy's traits)
    ssl_key: str

    check_running_interval = Float(
        1.0,
        config=True,
        help="""Seconds between checks that traefik and the managed services are still running
        (default 1). A traefik that exited is reaped, started again and given every route the hub
        knows; a service that exited is started again by JupyterHub; e.g. 0.5.""",
    )

    run_as = Unicode(
        "",
        config=True,
        help="""System account traefik runs as when the hub runs as root (created if missing; it
        owns the folder of traefik's configuration files). Default "": the hub's user. Example
        "gpulab_svc-proxy".""",
    )

    @default("traefik_api_hashed_password")
    def _cheap_hash_of_a_generated_password(self) -> str:
        password = self.traefik_api_password  # generated (new_token) unless configured
        configured = any("traefik_api_password" in self.config.get(cls.__name__, {}) for cls in type(self).__mro__)
        rounds = 12 if configured else GENERATED_PASSWORD_BCRYPT_ROUNDS  # 12: bcrypt's and the package's default
        return bcrypt.hashpw(password.encode("utf8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")

    _watch = Any(None)
    _adding = Dict()  # routespec -> the target of the route being added
    _services = Any(None)  # the ServiceWatch of the managed services (service_watch.py)
    _last_seen_running = Float(0.0)
    _account = Any(None)  # pwd entry of run_as, once prepared

    async def start(self):
        if self.run_as and os.geteuid() == 0:
            self._become_own_account()
        await super().start()
        self._last_seen_running = time.monotonic()
        self._services = ServiceWatch()
        self._watch = PeriodicCallback(self._check, 1e3 * self.check_running_interval)
        self._watch.start()

    def begin_stop(self) -> None:
        """SIGTERM to traefik now, so that its grace for requests in flight (a browser's open
        WebSockets hold it to the end) runs while the hub stops the rest; `stop`, at the end of
        JupyterHub's cleanup, then waits for it. Neither traefik nor a service is restarted after this."""
        if self._watch is not None:
            self._watch.stop()
        process = self.traefik_process
        if process is not None and process.poll() is None:
            process.terminate()

    async def stop(self):
        if self._watch is not None:
            self._watch.stop()
        await super().stop()

    async def _check(self) -> None:
        await self._services.poll(self.app, self.log)
        await self.check_running()

    async def check_running(self) -> None:
        """Restart traefik if it exited. Tornado never overlaps runs of one PeriodicCallback."""
        process = self.traefik_process
        if process is None or process.poll() is None:  # poll() also reaps a dead traefik
            self._last_seen_running = time.monotonic()
            return
        self.log.error("The proxy (traefik, pid %i) exited with status %s; restarting it",
                       process.pid, process.returncode)
        try:
            # The static and dynamic files are still in place, so the new traefik starts
            # with the routes of the old one; check_routes then adds whatever is missing.
            self._start_traefik()
            await self._wait_for_static_config()
            await self.check_routes(self.app.users, self.app._service_map)
        except Exception:
            # The next check tries again: the process we started, if any, is polled then.
            self.log.exception("Could not restart the proxy (traefik); trying again")
            return
        outage = time.monotonic() - self._last_seen_running
        self.log.warning("The proxy (traefik) is back as pid %i with every route; the outage lasted "
                         "at most %.1f s", self.traefik_process.pid, outage)
        self._last_seen_running = time.monotonic()

    # ------------------------------------------------------------ routes

    async def add_route(self, routespec, target, data):
        routespec = self.validate_routespec(routespec)
        self._adding[routespec] = target
        try:
            await super().add_route(routespec, target, data)
        finally:
            if self._adding.get(routespec) == target:  # not a later add of the same route's
                del self._adding[routespec]

    async def _check_for_traefik_service(self, routespec, kind):
        """The package's check (a router or a service of the route's name in traefik's API), and
        for the service of a route being added, that it leads to the route's target."""
        target = self._adding.get(self.validate_routespec(routespec))
        if kind != "service" or target is None:
            return await super()._check_for_traefik_service(routespec, kind)
        name = f"{traefik_utils.generate_alias(routespec, 'service')}@{self.provider_name}"
        try:
            response = await self._traefik_api_request(f"/api/http/services/{name}")
            servers = json.loads(response.body).get("loadBalancer", {}).get("servers", [])
        except Exception as error:  # as the package's check: the next try asks again
            if not (isinstance(error, HTTPClientError) and error.code == 404):  # 404: not there yet
                self.log.exception("Checking traefik's service %s failed", name)
            return False
        if [server.get("url") for server in servers] != [target]:
            self.log.debug("Traefik route for %s: still leads to %s, not %s", routespec, servers, target)
            return False
        return True

    # ------------------------------------------------------------ own account

    def _become_own_account(self) -> None:
        """The account, its folder (the configuration files' folder) and, with TLS, a copy of the
        certificate and key it can read (the originals are often root's alone)."""
        folder = Path(self.static_config_file).resolve().parent
        if Path(self.dynamic_config_file).resolve().parent != folder:
            raise ValueError("traefik's static and dynamic configuration files must share a folder to run as "
                             f"{self.run_as}")
        entry = prepare(ServiceAccount(self.run_as, (str(folder),)))
        self._account = entry
        self.dynamic_config_handler = OwnedConfigFile(self.dynamic_config_file, entry.pw_uid, entry.pw_gid)
        cert, key = self.ssl_cert, self.ssl_key
        if cert and key:
            self.ssl_cert = readable_copy(Path(cert), folder / "tls" / "cert.pem", entry)
            self.ssl_key = readable_copy(Path(key), folder / "tls" / "key.pem", entry)

    async def _setup_traefik_static_config(self):
        await super()._setup_traefik_static_config()
        if self._account is not None:  # read once, when traefik starts
            os.chown(self.static_config_file, self._account.pw_uid, self._account.pw_gid)

    def _start_traefik(self):
        if self._account is None:
            return super()._start_traefik()
        command = [*as_account(self._account, self.public_url), "traefik", "--configfile",
                   os.path.abspath(self.static_config_file)]
        self.traefik_process = Popen(command, env={**os.environ, **self.traefik_env}, cwd="/")

