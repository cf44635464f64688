"""The warm start's pure parts: the request the hub sends the zygote, what the zygote refuses,
which spawns start cold, and the rewriting of home-derived values in the forked child."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest

from gpulab.spawner.backends.local.warm_start import (
    HEADER,
    MAX_REQUEST,
    RequestError,
    SpawnRequest,
    WarmStartError,
    cold_reason,
    decode_reply,
    decode_request,
    extensions_enabled_by,
    interpreter_of,
    language_kept,
    receive_request,
    send_request,
)
from gpulab.spawner.backends.local.zygote import give_home, home_dependent, rewritten

REQUEST = SpawnRequest(
    argv=("jupyterhub-singleuser", "--KernelManager.transport=ipc"),
    env={"JUPYTERHUB_API_TOKEN": "secret", "HOME": "/home/gpulab-alice", "PATH": "/opt/env/bin:/usr/bin"},
    account="gpulab-alice",
    home="/home/gpulab-alice",
    cgroups=("/sys/fs/cgroup/gpulab/gpulab-alice",),
)


def payload(**changes) -> bytes:
    data = json.loads(REQUEST.encode()[HEADER.size:])
    data.update(changes)
    return json.dumps(data).encode()


def test_a_request_survives_encoding():
    encoded = REQUEST.encode()
    assert HEADER.unpack_from(encoded)[0] == len(encoded) - HEADER.size
    assert decode_request(encoded[HEADER.size:]) == REQUEST


def test_a_request_and_its_descriptors_cross_a_socket():
    left, right = socket.socketpair()
    reading, writing = __import__("os").pipe()
    big = SpawnRequest(REQUEST.argv, {**REQUEST.env, "LARGE": "x" * 300_000}, REQUEST.account, REQUEST.home)
    with left, right:
        import threading

        sender = threading.Thread(target=send_request, args=(left, big, [writing, writing]))
        sender.start()
        data, fds = receive_request(right)
        sender.join()
    assert decode_request(data) == big and len(fds) == 2


@pytest.mark.parametrize("changes, complaint", [
    ({"argv": ["/bin/sh", "-c", "id"]}, "argv[0] must be jupyterhub-singleuser"),
    ({"argv": []}, "argv must be a list"),
    ({"argv": ["jupyterhub-singleuser", 3]}, "each argument"),
    ({"argv": ["jupyterhub-singleuser", "a\0b"]}, "each argument"),
    ({"env": {"A=B": "x"}}, "not a variable name"),
    ({"env": {"TOKEN": "a\0b"}}, "variable TOKEN"),
    ({"env": ["A"]}, "env must be an object"),
    ({"account": "root; id"}, "not an account name"),
    ({"account": "Alice"}, "not an account name"),
    ({"home": "relative/home"}, "absolute path"),
    ({"home": "/home/../root"}, "absolute path"),
    ({"cgroups": ["/etc/cron.d"]}, "under /sys/fs/cgroup/"),
    ({"cgroups": ["/sys/fs/cgroup/../../etc"]}, "absolute path"),
    ({"cgroups": "/sys/fs/cgroup/x"}, "list of folders"),
    ({"extra": 1}, "exactly"),
])
def test_the_zygote_refuses_what_the_hub_never_sends(changes, complaint):
    with pytest.raises(RequestError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        decode_request(payload(**changes))


def test_the_zygote_refuses_missing_fields_junk_and_giants():
    with pytest.raises(RequestError, match="exactly"):
        decode_request(json.dumps({"argv": ["jupyterhub-singleuser"]}).encode())
    with pytest.raises(RequestError, match="not JSON"):
        decode_request(b"{nope")
    with pytest.raises(RequestError, match="over"):
        decode_request(b" " * (MAX_REQUEST + 1))
    with pytest.raises(WarmStartError, match="over"):
        SpawnRequest(("jupyterhub-singleuser",), {"BIG": "x" * MAX_REQUEST}, "", "/").encode()


def test_an_unprivileged_request_names_no_account():
    assert decode_request(payload(account="", cgroups=[])).account == ""


@pytest.mark.parametrize("cmd, shell, env, reason", [
    (["jupyterhub-singleuser"], [], {"PATH": "/usr/bin"}, None),
    (["/opt/env/bin/jupyterhub-singleuser", "--debug"], [], {"PYTHONUNBUFFERED": "1"}, None),
    (["jupyterhub-singleuser"], ["bash", "-c"], {}, "shell_cmd"),
    (["jupyter-labhub"], [], {}, "not jupyterhub-singleuser"),
    ([], [], {}, "not jupyterhub-singleuser"),
    (["jupyterhub-singleuser"], [], {"JUPYTERHUB_SINGLEUSER_APP": "notebook"}, "JUPYTERHUB_SINGLEUSER_APP"),
    (["jupyterhub-singleuser"], [], {"JUPYTERHUB_SINGLEUSER_EXTENSION": "0"}, "JUPYTERHUB_SINGLEUSER_EXTENSION"),
    (["jupyterhub-singleuser"], [], {"PYTHONPATH": "/x"}, "PYTHONPATH"),
    (["jupyterhub-singleuser"], [], {"PYTHONIOENCODING": "latin-1"}, "PYTHONIOENCODING"),
    (["jupyterhub-singleuser"], [], {"XDG_DATA_HOME": "/data"}, "XDG_DATA_HOME"),
    (["jupyterhub-singleuser"], [], {"JUPYTER_CONFIG_DIR": "/cfg"}, "JUPYTER_CONFIG_DIR"),
    (["jupyterhub-singleuser"], [], {"JUPYTER_RUNTIME_DIR": "/run/gpulab/1000"}, None),
    (["jupyterhub-singleuser"], [], {"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}, "LD_LIBRARY_PATH"),
    (["jupyterhub-singleuser"], [], {"LD_PRELOAD": "/lib/x.so"}, "LD_PRELOAD"),
    (["jupyterhub-singleuser"], [], {"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX"),
])
def test_spawns_a_zygote_cannot_reproduce_start_cold(cmd, shell, env, reason):
    found = cold_reason(cmd, shell, env)
    assert (found is None) if reason is None else (reason in found)


def test_the_interpreter_is_read_from_the_entry_points_first_line(tmp_path):
    script = tmp_path / "jupyterhub-singleuser"
    script.write_text("#!/opt/env/bin/python3.11\nimport sys\n")
    assert interpreter_of(script) == "/opt/env/bin/python3.11"
    script.write_text("#!/bin/sh\n'''exec' /very/long/path/python \"$0\" \"$@\"\n'''\n")
    assert interpreter_of(script) is None
    script.write_text("#!/usr/bin/env python3\n")
    assert interpreter_of(script) is None
    assert interpreter_of(tmp_path / "missing") is None


def test_replies():
    assert decode_reply(b'{"pid": 1234, "start_ticks": 99}\n') == (1234, 99)
    for answer, message in [(b'{"error": "no such account"}', "refused: no such account"), (b"", "answered"),
                            (b'{"pid": 1, "start_ticks": 5}', "answered"), (b'[1]', "answered")]:
        with pytest.raises(WarmStartError, match=message):
            decode_reply(answer)


def test_values_computed_from_the_zygotes_home_get_the_accounts():
    sentinel = "/nonexistent/zygote-home"
    assert rewritten({"a": (f"{sentinel}/x", 1), "b": [f"{sentinel}"]}, sentinel, "/home/u") == {
        "a": ("/home/u/x", 1), "b": ["/home/u"]}
    from traitlets import HasTraits, Unicode

    module = SimpleNamespace()  # stands in for an imported module
    import sys

    class Settings(HasTraits):
        folder = Unicode(f"{sentinel}/.jupyter/lab")

    Settings.__module__ = "gpulab_test_fake_module"
    module.TRASH = f"{sentinel}/.local/share/Trash"
    module.Settings = Settings
    module.OTHER = "/etc"
    sys.modules["gpulab_test_fake_module"] = module
    try:
        places = [p for p in home_dependent(sentinel) if p[0] in (module, Settings.folder)
                  or p[0] is vars(Settings).get("_static_immutable_initial_values")]
        give_home(places, "/home/gpulab-alice", sentinel)
    finally:
        del sys.modules["gpulab_test_fake_module"]
    assert module.TRASH == "/home/gpulab-alice/.local/share/Trash" and module.OTHER == "/etc"
    assert Settings().folder == "/home/gpulab-alice/.jupyter/lab"


def test_the_extensions_a_spawns_arguments_enable_are_imported_by_the_zygote_too():
    assert extensions_enabled_by(["--ServerApp.jpserver_extensions=gpulab.spawner.singleuser=True",
                                  "--ServerApp.jpserver_extensions=jupyter_scheduler=False",
                                  "--KernelManager.transport=ipc",
                                  "--ServerApp.jpserver_extensions=bad name=True"]) == ["gpulab.spawner.singleuser"]


def test_the_zygote_imports_with_the_language_every_spawn_inherits():
    hub = {"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "LANGUAGE": "de:en", "PATH": "/usr/bin"}
    assert language_kept(hub, ["PATH", "LANG", "LC_ALL"]) == {"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"}
    assert language_kept({"PATH": "/usr/bin"}, ["LANG"]) == {}
