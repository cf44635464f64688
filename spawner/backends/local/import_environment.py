"""The environment the zygote's imports read, and what a forked server does about each variable.

A cold server reads its environment while it imports; a server forked by the zygote imported with
the zygote's: PATH, the hub's language variables, HOME set to a sentinel (warm_start.HOME_SENTINEL),
nothing else. Whatever an import kept of a variable is the zygote's, not the spawn's: JupyterHub's
`JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH=0` (the hardening its documentation recommends) was
ignored by every warm server, and so was a proxy for JupyterLab's extension manager.

The zygote records every variable its imports read (`recording`), with the module that read it,
and names them when it says it is ready. Each is one of:

- read when used (READ_WHEN_USED): nothing kept depends on it, or the server reads it again when
  it uses it (the home: warm_start.HOME_SENTINEL; the temporary folder: reset at the fork; PATH: only
  looked up in, at import, by ctypes.util and shutil.which calls whose answers are not kept);
- derived again (DERIVED_AGAIN): kept at import, as a trait's default or a module's setting, and
  derived again from the spawn's environment in the forked child before the server runs
  (`derive_again`), the way the module itself computes it;
- anything else, kept at import and not derived again (JupyterLab's extension manager's proxy,
  jupyter_server's message catalog language, fsspec's and prometheus_client's settings, ...): a
  spawn that gives it another value than the zygote had starts cold, naming it (`cold_reason`).

A module that copies the whole environment at import is not seen by name (wsgiref's handlers
keep the zygote's for CGI scripts, which no server runs); fsspec scans it for FSSPEC_*, named
here. Variables the C library reads when a process starts (LD_LIBRARY_PATH, LD_PRELOAD,
GLIBC_TUNABLES, MALLOC_*) were read by the zygote's exec: warm_start.cold_reason handles those.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

READ_WHEN_USED = frozenset({"HOME", "PATH", "TMPDIR", "TEMP", "TMP", "SSLKEYLOGFILE"})
PREFIXES_SCANNED = ("FSSPEC_",)  # read by a scan of every variable, not by name

# What the zygote's imports read: (variable, module); set in the zygote, inherited by its servers
# and their kernel templates (warm_kernel compares a kernel's environment with its server's).
READ_AT_IMPORT: frozenset[tuple[str, str]] = frozenset()

_STDLIB = tuple({sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}),
                 sysconfig.get_path("platstdlib", vars={"platbase": sys.base_exec_prefix})})


def _in_standard_library(filename: str) -> bool:
    return filename.startswith("<frozen") or (
        filename.startswith(_STDLIB) and "/site-packages/" not in filename and "/dist-packages/" not in filename)


def _reader() -> str:
    """The module whose import read a variable: the innermost module body on the stack (a class
    body's `os.environ.get`, a helper of another module it calls, gettext or tempfile called at
    its import), else the innermost caller outside the standard library."""
    frame: FrameType | None = sys._getframe(3)
    outside = ""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "<module>" and not frame.f_code.co_filename.startswith("<frozen"):
            return name
        if not outside and not _in_standard_library(frame.f_code.co_filename) and name != __name__:
            outside = name
        frame = frame.f_back
    return outside


class RecordingEnviron(os._Environ):
    """os.environ, the same variables, that notes which are read by name, and by which module."""

    def __init__(self, environ: Any):
        super().__init__(environ._data, environ.encodekey, environ.decodekey, environ.encodevalue, environ.decodevalue)
        self.original = environ  # the os.environ it stands in for, the same variables
        self.read: set[tuple[str, str]] = set()
        self.modules_before = set(sys.modules)

    def _note(self, key: Any) -> None:
        if isinstance(key, str):
            self.read.add((key, _reader()))

    def __getitem__(self, key: Any) -> str:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)


def start_recording() -> RecordingEnviron:
    """From now on os.environ notes what is read (the zygote's first step, before its imports)."""
    recorder = RecordingEnviron(os.environ)
    os.environ = recorder  # os.getenv reads this module global too
    return recorder


def stop_recording(recorder: RecordingEnviron) -> frozenset[tuple[str, str]]:
    """os.environ as it was, in os and in every module imported since that took the recorder
    (`from os import environ`); what was read."""
    os.environ = recorder.original
    for module in [m for name, m in list(sys.modules.items()) if name not in recorder.modules_before]:
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is recorder:
                setattr(module, name, recorder.original)
    return frozenset(recorder.read)


def cold_reason(env: Mapping[str, str], imported_with: Mapping[str, str],
                read: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> str | None:
    """Why a process with `env` cannot be forked from one whose imports read `read` from
    `imported_with`, or None (pure)."""
    for name, module in sorted(read):
        if name in READ_WHEN_USED or (name, module) in DERIVED_AGAIN:
            continue
        if env.get(name) != imported_with.get(name):
            return f"{name} is {'set' if name in env else 'unset'} here, unlike when {module or 'Python'} was imported"
    for name in sorted(env):
        if name.startswith(PREFIXES_SCANNED) and env[name] != imported_with.get(name):
            return f"{name} is set (read when its module is imported)"
    return None


# ------------------------------------------------------------------ the forked child


def _set_trait_default(cls: type, name: str, value: Any) -> None:
    """Make `value` the default of trait `name` of `cls` and of every subclass loaded, as if the
    class had been defined with it (traitlets keeps static defaults in two places)."""
    cls.class_traits()[name].default_value = value  # type: ignore[attr-defined]
    pending = [cls]
    while pending:
        klass = pending.pop()
        pending.extend(klass.__subclasses__())
        statics = vars(klass).get("_static_immutable_initial_values")
        if statics is not None and name in statics:
            statics[name] = value


def _hub_auth() -> None:
    from jupyterhub.services import auth

    getenv = os.environ.get
    defaults = {
        "base_url": getenv("JUPYTERHUB_SERVICE_PREFIX") or "/",
        "api_url": getenv("JUPYTERHUB_API_URL") or "http://127.0.0.1:8081/hub/api",
        "keyfile": getenv("JUPYTERHUB_SSL_KEYFILE", ""),
        "certfile": getenv("JUPYTERHUB_SSL_CERTFILE", ""),
        "client_ca": getenv("JUPYTERHUB_SSL_CLIENT_CA", ""),
        "allow_token_in_url": auth._bool_env("JUPYTERHUB_ALLOW_TOKEN_IN_URL", default=False),
        "allow_websocket_cookie_auth": auth._bool_env("JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH", default=True),
    }
    for name, value in defaults.items():
        _set_trait_default(auth.HubAuth, name, value)


def _session() -> None:
    from jupyter_client.session import Session

    _set_trait_default(Session, "username", os.environ.get("USER", "username"))


def _jupyter_paths() -> None:
    import jupyter_core.paths as paths

    paths.allow_insecure_writes = os.environ.get("JUPYTER_ALLOW_INSECURE_WRITES", "false").lower() in ("true", "1")


def _xsrf() -> None:
    from jupyterhub import _xsrf_utils as xsrf

    xsrf._anonymous_ip_cidrs = xsrf._get_anonymous_ip_cidrs()
    xsrf._anonymous_id_headers = os.environ.get("JUPYTERHUB_XSRF_ANONYMOUS_ID_HEADERS", "User-Agent").split(";")


# module that kept them -> (the variables, what derives the module's values again from them)
_DERIVATIONS: dict[str, tuple[tuple[str, ...], Callable[[], None]]] = {
    "jupyterhub.services.auth": (("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_API_URL", "JUPYTERHUB_SSL_KEYFILE",
                                  "JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_CLIENT_CA", "JUPYTERHUB_ALLOW_TOKEN_IN_URL",
                                  "JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH"), _hub_auth),
    "jupyter_client.session": (("USER",), _session),
    "jupyter_core.paths": (("JUPYTER_ALLOW_INSECURE_WRITES",), _jupyter_paths),
    "jupyterhub._xsrf_utils": (("JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS", "JUPYTERHUB_XSRF_ANONYMOUS_ID_HEADERS"), _xsrf),
}
# (variable, module that kept it): derived again in the forked child, so never a reason to start cold
DERIVED_AGAIN = frozenset((name, module) for module, (names, _) in _DERIVATIONS.items() for name in names)


def derive_again() -> None:
    """In a forked child whose os.environ is now its own: what the imported modules of DERIVED_AGAIN
    kept, from this environment. A module the zygote did not import computes it at its own import."""
    for module, (_, derive) in _DERIVATIONS.items():
        if module in sys.modules:
            derive()
