"""Warm kernels' pure parts: which launches start the usual way, the launch's encoding and checks,
the Popen-like handle's reading of the template's report, the provisioner's fall-back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest
from jupyter_client.kernelspec import KernelSpec

from gpulab.spawner.backends.local import warm_kernel
from gpulab.spawner.backends.local import import_environment
from gpulab.spawner.backends.local.warm_kernel import (
    HEADER,
    ForkedKernel,
    WarmKernelError,
    cold_reason,
    decode_launch,
    encode_launch,
    receive_launch,
)

ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "/run/gpulab/1000/kernel-1.json"]
ENV = {"HOME": "/home/gpulab-alice", "PATH": "/opt/env/bin:/usr/bin", "JPY_PARENT_PID": "41",
       "JUPYTERHUB_API_TOKEN": "alice's"}
TEMPLATE_ENV = {"HOME": "/home/gpulab-alice", "PATH": "/opt/env/bin:/usr/bin"}


def test_the_environments_python_kernel_starts_warm():
    assert cold_reason(ARGV, ENV, TEMPLATE_ENV) is None
    assert cold_reason(ARGV, {**ENV, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "agg"}, TEMPLATE_ENV) is None


@pytest.mark.parametrize("argv", [
    ["/usr/bin/python3", *ARGV[1:]],  # another interpreter (another environment)
    ["python", *ARGV[1:]],  # not resolved by jupyter_client: found on PATH, maybe elsewhere
    [*ARGV[:2], "other_launcher", *ARGV[3:]],
    [*ARGV, "--debug"],  # extra arguments
    ARGV[:4],
    ["R", "--slave", "-e", "IRkernel::main()", "--args", "f.json"],
])
def test_another_command_starts_the_usual_way(argv):
    assert "the command is" in cold_reason(argv, ENV, TEMPLATE_ENV)


@pytest.mark.parametrize("name", ["PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONIOENCODING", "PYDEVD_USE_CYTHON",
                                  "DEBUGPY_LOG_DIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "XDG_CACHE_HOME"])
def test_a_variable_read_at_start_or_import_starts_the_usual_way(name):
    assert name in cold_reason(ARGV, {**ENV, name: "/elsewhere"}, TEMPLATE_ENV)


def test_another_home_starts_the_usual_way():
    assert cold_reason(ARGV, {**ENV, "HOME": "/tmp"}, TEMPLATE_ENV) == "HOME is not the server's"


@pytest.mark.parametrize("name", ["LD_LIBRARY_PATH", "LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX"])
def test_a_variable_the_c_library_reads_at_a_process_start_starts_the_usual_way_unless_the_servers(name):
    assert name in cold_reason(ARGV, {**ENV, name: "/usr/local/cuda/lib64"}, TEMPLATE_ENV)
    assert cold_reason(ARGV, {**ENV, name: "1"}, {**TEMPLATE_ENV, name: "1"}) is None


def test_a_variable_the_zygotes_imports_kept_starts_the_usual_way_unless_derived_again(monkeypatch):
    monkeypatch.setattr(import_environment, "READ_AT_IMPORT", frozenset({
        ("https_proxy", "jupyterlab.extensions.pypi"), ("USER", "jupyter_client.session")}))
    assert "https_proxy" in cold_reason(ARGV, {**ENV, "https_proxy": "http://proxy:3128"}, TEMPLATE_ENV)
    assert cold_reason(ARGV, {**ENV, "https_proxy": "http://proxy:3128"},
                       {**TEMPLATE_ENV, "https_proxy": "http://proxy:3128"}) is None
    assert cold_reason(ARGV, {**ENV, "USER": "someone"}, TEMPLATE_ENV) is None  # the kernel's child derives it


def test_a_launch_round_trips_and_is_checked():
    data = encode_launch(ARGV, ENV, "/home/gpulab-alice/project")
    (length,) = HEADER.unpack_from(data)
    assert decode_launch(data[HEADER.size:HEADER.size + length]) == (ARGV, ENV, "/home/gpulab-alice/project")
    for bad in ('{"argv": [], "env": {}}', '{"argv": [1], "env": {}, "cwd": "/"}',
                '{"argv": [], "env": {"A=B": "c"}, "cwd": "/"}', '{"argv": [], "env": {}, "cwd": "relative"}',
                '[]'):
        with pytest.raises(WarmKernelError):
            decode_launch(bad.encode())


def test_a_launch_comes_with_its_three_descriptors():
    left, right = socket.socketpair()
    read, write = os.pipe()
    try:
        data = encode_launch(ARGV, ENV, "/")
        socket.send_fds(left, [data], [read, 1, 2])
        argv, env, cwd, fds = receive_launch(right)
        assert (argv, env, cwd) == (ARGV, ENV, "/") and len(fds) == 3
        for fd in fds:
            os.close(fd)
    finally:
        for fd in (read, write):
            os.close(fd)
        left.close()
        right.close()


def test_a_forked_kernel_reports_its_exit_as_popen_does():
    template, server = socket.socketpair()
    server.setblocking(False)
    sleeper = subprocess.Popen(["sleep", "60"])
    kernel = ForkedKernel(sleeper.pid, server, None)
    try:
        assert kernel.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            kernel.wait(0.2)
        kernel.terminate()
        sleeper.wait(10)
        assert kernel.poll() is None  # not until the template said so
        template.sendall(f"exit {-signal.SIGTERM}\n".encode())
        assert kernel.wait(10) == -signal.SIGTERM == kernel.returncode
        kernel.kill()  # a kernel that ended is signalled no more (its pid may be another's by now)
    finally:
        template.close()
        sleeper.kill()


def test_a_kernel_whose_template_died_without_a_word_is_gone_once_its_process_is():
    template, server = socket.socketpair()
    server.setblocking(False)
    sleeper = subprocess.Popen(["sleep", "60"])
    kernel = ForkedKernel(sleeper.pid, server, None)
    template.close()
    assert kernel.poll() is None  # the template is gone, the kernel not
    sleeper.kill()
    sleeper.wait(10)
    assert kernel.wait(10) == -signal.SIGKILL


def test_a_server_without_a_template_starts_kernels_the_usual_way(monkeypatch):
    """A server not forked by the zygote (no template) falls back to LocalProvisioner's launch."""
    monkeypatch.setattr(warm_kernel, "CHANNEL", None)
    calls = []

    async def usual(self, cmd, **kwargs):
        calls.append(cmd)
        return {"usual": True}

    monkeypatch.setattr(warm_kernel.LocalProvisioner, "launch_kernel", usual)
    provisioner = warm_kernel.WarmKernelProvisioner(kernel_id="k", kernel_spec=KernelSpec(language="python", argv=ARGV))
    with pytest.raises(WarmKernelError):
        asyncio.run(warm_kernel.fork_kernel(ARGV, ENV, "/"))
    result = asyncio.run(provisioner.launch_kernel(ARGV, env=ENV, cwd="/"))
    assert result == {"usual": True} and calls == [ARGV]
