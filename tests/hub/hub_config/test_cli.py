"""The `gpulab` command as users run it: a subprocess of the installed entry point."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.hub import GPULAB


def run(*args, cwd=None):
    return subprocess.run([GPULAB, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize("text, key_path", [
    ("hub:\n  port: 8000\n  prot: 8001\n", "hub.prot: unknown key"),
    ("hub:\n  port: eighty\n", 'hub.port: got "eighty" (a string), expected an integer'),
    ("hub:\n  port: 8000\n  ip: [127.0.0.1\n", "hub.ip"),
])
def test_a_bad_file_exits_2_naming_the_key_and_starts_nothing(tmp_path, text, key_path):
    (tmp_path / "gpulab.yaml").write_text(text)
    result = run("up", "--config", str(tmp_path / "gpulab.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert key_path in result.stderr
    assert not (tmp_path / ".gpulab").exists()


def test_a_bad_flag_is_reported_like_a_bad_file(tmp_path):
    result = run("up", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2 and "hub.port: got 0" in result.stderr


def test_validate_exits_2_on_a_bad_file_and_0_on_a_good_one(tmp_path):
    (tmp_path / "gpulab.yaml").write_text("auth:\n  type: saml\n")
    bad = run("config", "validate", cwd=tmp_path)
    assert bad.returncode == 2 and "auth.type: got \"saml\"" in bad.stderr
    (tmp_path / "gpulab.yaml").write_text("auth:\n  type: local\n")
    assert run("config", "validate", cwd=tmp_path).returncode == 0


def test_version_and_help_on_every_subcommand():
    assert run("--version").stdout.startswith("gpulab ")
    for command in (["up"], ["config"], ["config", "show"], ["config", "set"], ["config", "validate"],
                    ["config", "unset"], ["config", "add-item"], ["config", "remove-item"], ["db", "upgrade"]):
        result = run(*command, "--help")
        assert result.returncode == 0 and "usage: gpulab" in result.stdout, command
