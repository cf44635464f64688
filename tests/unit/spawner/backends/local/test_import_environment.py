"""What the zygote's imports read from the environment (import_environment.py): the recorder, the
cold rule, and the values derived again in a forked child, side by side with what a new
interpreter computes from the same environment. Each recording and derivation runs in its own
interpreter (they change os.environ and imported classes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpulab.spawner.backends.local.import_environment import cold_reason


def run_python(code: str, env: dict[str, str], cwd: Path | None = None) -> dict:
    """The JSON the code's last line prints, from a new interpreter with exactly `env`."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_recorder_names_each_variable_an_import_reads_and_the_module_it_kept_it_in(tmp_path):
    (tmp_path / "gpulab_fake_settings.py").write_text(textwrap.dedent("""
        import os
        from os import environ
        import gpulab_fake_helper
        PROXY = environ.get("GPULAB_T_PROXY")
        class Settings:
            user = os.getenv("GPULAB_T_USER", "nobody")
        FLAG = gpulab_fake_helper.flag("GPULAB_T_FLAG")
        def later():
            return os.environ.get("GPULAB_T_LATER")
    """))
    (tmp_path / "gpulab_fake_helper.py").write_text("import os\n\ndef flag(name):\n    return name in os.environ\n")
    seen = run_python("""
        import json, os, sys
        sys.path.insert(0, ".")
        import gpulab_fake_helper
        from gpulab.spawner.backends.local import import_environment
        recorder = import_environment.start_recording()
        import gpulab_fake_settings
        read = import_environment.stop_recording(recorder)
        gpulab_fake_settings.later()  # after the recording: not noted
        os.environ["GPULAB_T_PROXY"] = "http://proxy:3128"
        print(json.dumps({"read": sorted(read), "same": gpulab_fake_settings.environ is os.environ,
                          "visible": gpulab_fake_settings.environ.get("GPULAB_T_PROXY"),
                          "type": type(os.environ).__name__}))
    """, {"PATH": os.environ["PATH"], "GPULAB_T_USER": "alice"}, cwd=tmp_path)
    assert [tuple(pair) for pair in seen["read"]] == [
        ("GPULAB_T_FLAG", "gpulab_fake_settings"), ("GPULAB_T_PROXY", "gpulab_fake_settings"),
        ("GPULAB_T_USER", "gpulab_fake_settings")]
    # the module that took the recorder has os.environ back, one and the same mapping
    assert seen["same"] and seen["visible"] == "http://proxy:3128" and seen["type"] == "_Environ"


READ = frozenset({("PATH", "shutil"), ("HOME", "jupyter_core.paths"), ("USER", "jupyter_client.session"),
                  ("JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH", "jupyterhub.services.auth"),
                  ("https_proxy", "jupyterlab.extensions.pypi"), ("LANG", "jupyter_server.transutils"),
                  ("USER", "some_other_module")})
ZYGOTE = {"PATH": "/env/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
SPAWN = {"PATH": "/env/bin:/usr/local/bin:/usr/bin", "HOME": "/home/alice", "LANG": "C.UTF-8",
         "JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH": "0"}


@pytest.mark.parametrize("env, read, reason", [
    (SPAWN, READ - {("USER", "some_other_module")}, None),  # read when used, or derived again
    ({**SPAWN, "USER": "alice"}, READ - {("USER", "some_other_module")}, None),
    ({**SPAWN, "USER": "alice"}, READ, "USER is set here, unlike when some_other_module was imported"),
    ({**SPAWN, "https_proxy": "http://proxy:3128"}, READ, "https_proxy is set here, unlike when "
                                                            "jupyterlab.extensions.pypi was imported"),
    ({**SPAWN, "LANG": "de_DE.UTF-8"}, READ, "LANG is set here, unlike when jupyter_server.transutils"),
    ({k: v for k, v in SPAWN.items() if k != "LANG"}, READ, "LANG is unset here"),
    ({**SPAWN, "FSSPEC_CACHE_STORAGE": "/tmp"}, frozenset(), "FSSPEC_CACHE_STORAGE is set"),
])
def test_a_spawn_starts_cold_when_an_import_kept_another_value_than_its_own(env, read, reason):
    found = cold_reason(env, ZYGOTE, read)
    assert (found is None) if reason is None else (reason in found), found


IMPORTS = """
import json, os
from jupyterhub.services.auth import HubAuth, HubOAuth
from jupyterhub import _xsrf_utils
from jupyter_client.session import Session
import jupyter_core.paths
"""
VALUES = """
names = ["base_url", "api_url", "keyfile", "certfile", "client_ca", "allow_token_in_url", "allow_websocket_cookie_auth"]
print(json.dumps({"hub_auth": {n: getattr(HubAuth(api_token="t"), n) for n in names},
                  "hub_oauth": {n: getattr(HubOAuth(api_token="t", oauth_client_id="c"), n) for n in names},
                  "session": Session().username, "insecure": jupyter_core.paths.allow_insecure_writes,
                  "cidrs": [str(n) for n in _xsrf_utils._anonymous_ip_cidrs],
                  "headers": _xsrf_utils._anonymous_id_headers}))
"""
SPAWN_ENV = {"USER": "alice", "JUPYTERHUB_ALLOW_WEBSOCKET_COOKIE_AUTH": "0", "JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1",
             "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_API_URL": "http://10.0.0.1:8081/hub/api",
             "JUPYTERHUB_SSL_KEYFILE": "/k", "JUPYTERHUB_SSL_CERTFILE": "/c", "JUPYTERHUB_SSL_CLIENT_CA": "/ca",
             "JUPYTER_ALLOW_INSECURE_WRITES": "true", "JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS": "10.0.0.0/8;192.168.0.0/16",
             "JUPYTERHUB_XSRF_ANONYMOUS_ID_HEADERS": "User-Agent;X-Forwarded-For"}
BECOME_THE_SPAWN = f"os.environ.update({SPAWN_ENV!r})\n"


def test_what_the_child_derives_again_is_what_a_new_interpreter_computes_from_its_environment():
    path = {"PATH": os.environ["PATH"]}
    new = run_python(IMPORTS + VALUES, {**path, **SPAWN_ENV})
    # imported with the zygote's environment, then the spawn's, as a forked child
    forked = run_python(IMPORTS + BECOME_THE_SPAWN + "from gpulab.spawner.backends.local.import_environment import "
                        "derive_again\nderive_again()\n" + VALUES, path)
    stale = run_python(IMPORTS + BECOME_THE_SPAWN + VALUES, path)
    assert forked == new
    assert new["hub_auth"]["allow_websocket_cookie_auth"] is False and new["session"] == "alice"
    assert stale != new  # without derive_again: the zygote's values (the hole this closes)
