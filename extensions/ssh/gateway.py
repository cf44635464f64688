"""The SSH gateway: signs people in, rate-limits failures, and relays their channels to the
endpoint inside the server they named.

Sign-in: a public key registered on the "SSH keys" page says who is connecting (the SSH
user name only names the server: `alice`, `alice+gpu`); a hub API token as the password
does too when `ssh.allow_token_password` is on. Which servers that person may use is the
hub's decision (see upstream.py).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import asyncssh

from .audit import AuditLog
from .hubapi import HubAPI, HubError
from .publickeys import fingerprint
from .lockouts import LockoutStore
from .ratelimit import FailureLimiter, source_key
from .relay import SessionRelay, TCPRelay
from .store import KeyStore
from .targets import BadLogin, Target, parse_login, token_allows
from .trust import FAST_CIPHERS
from .upstream import Refused, Upstream


@dataclass
class GatewaySettings:
    bind_address: str
    port: int
    allow_token_password: bool
    login_timeout: float = 60


class Gateway:
    def __init__(self, settings: GatewaySettings, host_key: asyncssh.SSHKey, keys: KeyStore, hub: HubAPI,
                 upstream: Upstream, limiter: FailureLimiter, lockouts: LockoutStore, audit: AuditLog, log):
        self.settings = settings
        self.host_key = host_key
        self.keys = keys
        self.hub = hub
        self.upstream = upstream
        self.limiter = limiter
        self.lockouts = lockouts
        self.audit = audit
        self.log = log
        self.listener: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        self.limiter.restore(await asyncio.to_thread(self.lockouts.active, self.limiter.clock()))
        self.listener = await asyncssh.listen(
            self.settings.bind_address, self.settings.port,
            server_factory=lambda: GatewayConnection(self),
            server_host_keys=[self.host_key], server_version="gpulab", encryption_algs=FAST_CIPHERS,
            encoding=None, line_editor=False, kbdint_auth=False,
            password_auth=self.settings.allow_token_password, public_key_auth=True,
            agent_forwarding=False, x11_forwarding=False, allow_scp=False,
            keepalive_interval=60, login_timeout=self.settings.login_timeout,
            config=None,
        )
        self.log.info("SSH gateway listening on %s:%s", self.settings.bind_address, self.settings.port)

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()


class GatewayConnection(asyncssh.SSHServer):
    """One client connection: its sign-in, then its channels."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.audit = gateway.audit
        self.source = "?"
        self.login = ""
        self.target: Target | None = None
        self.identity: str | None = None
        self.candidate: tuple[str, str, str | None] | None = None  # (identity, method, key) of the latest validation
        self.keys_refused = 0
        self.upstream_task: asyncio.Task | None = None
        self.upstream_connection: asyncssh.SSHClientConnection | None = None
        self.channels = 0

    # ------------------------------------------------------------ sign-in

    def connection_made(self, conn):
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source = str(peer[0])

    def begin_auth(self, username: str) -> bool:
        self.login = username
        try:
            self.target = parse_login(username)
        except BadLogin as exc:
            self.audit("refused", login=username, source=self.source, reason="bad login")
            raise asyncssh.PermissionDenied(str(exc)) from None
        self._refuse_if_locked()
        return True

    @property
    def login_target(self) -> Target:
        """The server the login names (begin_auth parses it before any authentication or channel)."""
        if self.target is None:
            raise asyncssh.PermissionDenied("no login name yet")
        return self.target

    def _refuse_if_locked(self) -> None:
        # Only the source address is ever locked: a user's valid key must keep working
        # whoever fails on purpose in their name.
        wait = self.gateway.limiter.locked_for(source_key(self.source))
        if wait:
            self.audit("refused", login=self.login, source=self.source, reason="locked out")
            raise asyncssh.PermissionDenied(
                f"too many failed sign-ins from {self.source}; try again in {math.ceil(wait)} s")

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self._refuse_if_locked()
        key_fingerprint = fingerprint(key)
        owner = await asyncio.to_thread(self.gateway.keys.owner_of, key_fingerprint)
        if owner is None:
            # Counted once, when the connection ends unsigned-in: a client offers its keys in
            # turn, and a later one may be right. Not slowed: keys cannot be guessed.
            self.keys_refused += 1
            return False
        self.candidate = (owner, "publickey", key_fingerprint)
        return True

    def password_auth_supported(self) -> bool:
        return self.gateway.settings.allow_token_password

    async def validate_password(self, username: str, password: str) -> bool:
        self._refuse_if_locked()
        try:
            found = await self.gateway.hub.token_owner(password) if password else None
        except HubError as exc:
            self.gateway.log.error("cannot check a token with the hub: %s", exc)
            return False
        if found is None:
            await self._failed("password")
            return False
        owner, scopes = found
        if not token_allows(scopes, self.login_target):
            self.audit("refused", identity=owner, login=self.login, source=self.source,
                       reason="token lacks access:servers for the server")
            raise asyncssh.PermissionDenied(
                f"that token may not access {self.login_target.describe()}: use a token with the access:servers scope")
        self.candidate = (owner, "token", None)
        return True

    async def _failed(self, method: str) -> None:
        """Count a failed password: lock the source out after too many (saved, so a restart
        keeps it), and hold the refusal back while the user is over the limit (guessing a
        user's token gets no faster with more addresses)."""
        self._count_failure(method)
        await self._hold_refusal()
        self._refuse_if_locked()

    def _count_failure(self, method: str) -> None:
        self.audit("auth-failed", login=self.login, source=self.source, method=method)
        limiter = self.gateway.limiter
        locked = limiter.failed(source_key(self.source), self.target.owner if self.target else None)
        for key, until in locked.items():
            self.audit("locked-out", who=key, seconds=int(limiter.lockout))
            asyncio.ensure_future(self._save_lockout(key, until))

    async def _save_lockout(self, key: str, until: float) -> None:
        try:
            await asyncio.to_thread(self.gateway.lockouts.lock, key, until)
        except Exception:  # the lockout holds in memory; only a restart would forget it
            self.gateway.log.exception("cannot save the SSH lockout of %s", key)

    async def _hold_refusal(self) -> None:
        delay = self.gateway.limiter.hold(self.login_target.owner)
        if delay:
            self.audit("slowed", login=self.login, source=self.source, seconds=round(delay, 1))
            await asyncio.sleep(delay)

    def auth_completed(self) -> None:
        # asyncssh validates the key (or password) of a request right before accepting it,
        # so the latest candidate is the one that signed in.
        if self.candidate is None:  # (asyncssh completes only after a validation said yes)
            raise asyncssh.PermissionDenied("nothing was validated")
        identity, method, key = self.candidate
        self.identity = identity
        self.gateway.limiter.succeeded(self.login_target.owner)
        self.audit("login", identity=identity, login=self.login, source=self.source, method=method, key=key)
        if key is not None:
            asyncio.ensure_future(asyncio.to_thread(self.gateway.keys.mark_used, key))

    def connection_lost(self, exc):
        if self.identity is None and self.keys_refused:
            self._count_failure("publickey")  # locks the source for its next connection
        if self.upstream_task is not None:
            self.upstream_task.cancel()
        if self.upstream_connection is not None:
            self.upstream_connection.close()
        if self.identity is not None:
            self.audit("logout", identity=self.identity, target=self.login_target.label, source=self.source)

    # ------------------------------------------------------------ channels

    async def _upstream(self, notify) -> asyncssh.SSHClientConnection:
        """The connection to the target's endpoint, opened by the first channel that needs it."""
        if self.identity is None:  # (asyncssh opens channels only after sign-in)
            raise Refused("not signed in")
        if self.upstream_task is None:
            self.upstream_task = asyncio.ensure_future(
                self.gateway.upstream.open(self.identity, self.login_target, notify))
        try:
            connection = await asyncio.shield(self.upstream_task)
        except Refused as exc:
            self.audit("refused", identity=self.identity, target=self.login_target.label, source=self.source,
                       reason=str(exc))
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still an answer, never a hang
            self.gateway.log.exception("SSH to %s for %s failed", self.login_target.label, self.identity)
            self.audit("refused", identity=self.identity, target=self.login_target.label, source=self.source,
                       reason=f"gateway error: {type(exc).__name__}")
            raise Refused(f"the gateway could not reach {self.login_target.describe()}; the hub's log says why") from None
        if self.upstream_connection is None:
            self.upstream_connection = connection
            asyncio.ensure_future(self._close_with(connection))
        return connection

    async def _close_with(self, connection) -> None:
        await connection.wait_closed()
        self.conn.close()  # the server went away: so does the client's connection

    def _fields(self) -> dict:
        return {"identity": self.identity, "target": self.login_target.label, "source": self.source}

    def session_requested(self):
        return SessionRelay(
            self._upstream,
            on_open=lambda details: self.audit("session-open", **self._fields(), **details),
            on_close=lambda details: self.audit("session-close", **self._fields(), **details),
        )

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        destination = f"{dest_host}:{dest_port}"

        async def open_forward():
            try:
                connection = await self._upstream(lambda text: None)
            except Refused as exc:
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, str(exc)) from None
            relay = await TCPRelay.open(connection, dest_host, dest_port, on_close=lambda: self.audit(
                "session-close", **self._fields(), kind="forward", destination=destination))
            self.audit("session-open", **self._fields(), kind="forward", destination=destination)
            return relay

        return open_forward()

    def server_requested(self, listen_host, listen_port):
        return False  # remote forwarding (-R) is not offered
