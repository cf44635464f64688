"""The scheduler launcher's checks (pure) and its socket round trip with a real runner process.

The round trip is the launcher's real server and client over a Unix socket, in this process;
the hub, the service's account and the peer check are covered by
tests/security/test_scheduler_service_account.py.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import pytest

from gpulab.compute.limits import Limits
from gpulab.compute.processes import ProcessRef
from gpulab.spawner.backends.local.runner_process import ProcessLauncher, RunnerLaunch
from gpulab.extensions.scheduler.launcher import (HELPER_NAME, HelperLauncher, LauncherError, Launching, check_log_file,
                                                  check_request)
from gpulab.hub_config.services import root_helper
from gpulab.hub_config.services.root_helper import Refused


RUN = str(uuid.uuid4())
LAUNCH = {"run_id": RUN, "owner": "ann", "python": "", "env": {"A": "1"},
          "limits": {"cpu_limit": 1.5, "cpu_guarantee": None, "memory_limit": 1 << 30, "memory_guarantee": None},
          "image": ""}
PYTHONS = frozenset({"", "/opt/envs/torch"})
IMAGES = frozenset({"ghcr.io/gpulab/cpu:cpu-python-3.12"})
# The account this module makes has its home in pytest's private tmp_path, and accounts are shared
# by the test modules of a worker: a name no hub test uses ("ann" broke a later container test).
RUNNER_OWNER = "launcher-test-owner"


def test_a_well_formed_start_becomes_a_runner_launch():
    op, (launch,) = check_request({"op": "start", "launch": LAUNCH}, "gpulab-", PYTHONS)
    assert op == "start"
    assert launch == RunnerLaunch(RUN, "ann", "", {"A": "1"}, Limits(cpu_limit=1.5, memory_limit=1 << 30))
    assert check_request({"op": "stop", "run_id": RUN, "ref": "42:123"}, "gpulab-", PYTHONS) == (
        "stop", (RUN, ProcessRef(42, 123)))
    assert check_request({"op": "wait", "ref": "42:None"}, "gpulab-", PYTHONS) == ("wait", (ProcessRef(42, None),))


def test_a_run_in_a_container_names_one_of_the_backends_images():
    image = next(iter(IMAGES))
    _, (launch,) = check_request({"op": "start", "launch": {**LAUNCH, "image": image}}, "gpulab-", PYTHONS, IMAGES)
    assert launch.image == image
    with pytest.raises(Refused, match="not one of the configured environments' on this backend"):
        check_request({"op": "start", "launch": {**LAUNCH, "image": "docker.io/library/debian"}}, "gpulab-",
                      PYTHONS, IMAGES)
    with pytest.raises(Refused, match="not one of the configured environments' on this backend"):
        check_request({"op": "start", "launch": {**LAUNCH, "image": image}}, "gpulab-", PYTHONS)  # not docker


@pytest.mark.parametrize("request_, reason", [
    ({"op": "start", "launch": {**LAUNCH, "python": "/usr/bin/perl"}}, "not one of the configured environments'"),
    ({"op": "start", "launch": {**LAUNCH, "owner": "x" * 256}}, "not a hub user name"),
    ({"op": "start", "launch": {**LAUNCH, "owner": "a\nb"}}, "not a hub user name"),
    ({"op": "start", "launch": {**LAUNCH, "run_id": RUN.upper()}}, "not a run id"),
    ({"op": "start", "launch": {**LAUNCH, "env": {"X": 1}}}, "not an environment variable"),
    ({"op": "start", "launch": {**LAUNCH, "env": {"X": "a\0b"}}}, "not an environment variable"),
    ({"op": "start", "launch": {**LAUNCH, "env": {"X": "y" * (300 << 10)}}}, "env is over"),
    ({"op": "start", "launch": {**LAUNCH, "limits": {"cpu_limit": True, "cpu_guarantee": None, "memory_limit": None,
                                                     "memory_guarantee": None}}}, "positive number"),
    ({"op": "start", "launch": {**LAUNCH, "limits": {}}}, "limits has exactly"),
    ({"op": "start", "launch": {**LAUNCH, "home": "/root"}}, "launch has exactly"),
    ({"op": "start", "launch": LAUNCH, "extra": 1}, "start takes exactly launch"),
    ({"op": "stop", "run_id": RUN, "ref": "0:1"}, "not a runner reference"),
    ({"op": "stop", "run_id": RUN, "ref": "-1:1"}, "not a runner reference"),
    ({"op": "wait", "ref": 7}, "not a runner reference"),
    ({"op": "cleanup", "run_id": "../../sys/fs/cgroup"}, "not a run id"),
    ({"op": "read_notebook", "owner": "ann", "path": 3}, "path is text"),
    ({"op": "kill", "pid": 1}, "unknown operation 'kill'"),
    ("start", "a JSON object"),
])
def test_malformed_requests_are_refused_with_the_reason(request_, reason):
    with pytest.raises(Refused, match=reason):
        check_request(request_, "gpulab-", PYTHONS)


def test_the_log_descriptor_must_be_a_file_open_for_writing(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("")
    read_only, writable = os.open(path, os.O_RDONLY), os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(Refused, match="not a file open for writing"):
            check_log_file([read_only])
        with pytest.raises(Refused, match="not a file open for writing"):
            check_log_file([os.open(tmp_path, os.O_RDONLY)])
        with pytest.raises(Refused, match="one descriptor, got 2"):
            check_log_file([writable, writable])
        assert check_log_file([writable]) == writable
    finally:
        os.close(read_only)
        os.close(writable)


def test_a_runner_started_through_the_socket_writes_to_the_log_it_was_handed(tmp_path, account_prefix):
    """As root, the owner's account is made (with the session's test prefix, removed at the end)."""
    log = logging.getLogger("test")
    launching = Launching(ProcessLauncher(account_prefix, str(tmp_path / "homes"), str(tmp_path), log), None,
                          account_prefix, frozenset({""}))
    path = tmp_path / "launcher.sock"
    server = root_helper.Server(path, launching.answer, os.getuid(), HELPER_NAME)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HelperLauncher(path, wait=2)
        log_path = tmp_path / "log.txt"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:  # no GPULAB_RUN_URL: the runner stops at once with a traceback, exit status 1
            ref = client.start(RunnerLaunch(RUN, RUNNER_OWNER, "", {}, Limits()), fd)
        finally:
            os.close(fd)
        assert client.wait(ref) == 1
        assert "GPULAB_RUN_URL" in log_path.read_text()
        with pytest.raises(LauncherError, match="not one of the configured environments'"):
            client.start(RunnerLaunch(RUN, RUNNER_OWNER, "/bin", {}, Limits()), os.open(log_path, os.O_WRONLY))
        client.stop(RUN, ref)  # ended already: nothing to do
        client.cleanup(RUN)
    finally:
        server.shutdown()
        server.server_close()
