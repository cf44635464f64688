"""scripts/environment.sh, which `./gpulab` and `./test.sh` source: a first install shows one
progress line per step, not pip's and setuptools' hundreds of lines (issue 15 item 9)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "environment.sh"


def run_step(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    script = f'source "{SCRIPT}"; gpulab_step "{tmp_path}/install.log" "installing things" bash -c \'{command}\''
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_a_noisy_step_prints_one_line(tmp_path):
    done = run_step(tmp_path, "for i in $(seq 800); do echo Package would be ignored $i >&2; done")
    assert done.returncode == 0 and done.stdout == ""
    assert re.fullmatch(r"gpulab: installing things \.\.\. done \(\d+s\)\n", done.stderr)
    assert (tmp_path / "install.log").read_text().count("would be ignored") == 800


def test_a_failed_step_shows_why_and_keeps_its_status(tmp_path):
    failed = run_step(tmp_path, "echo resolver says no >&2; exit 3")
    assert failed.returncode == 3
    assert "installing things ... failed" in failed.stderr and "resolver says no" in failed.stderr
    assert f"{tmp_path}/install.log" in failed.stderr


def test_every_pip_and_venv_call_goes_through_a_step():
    calls = [line for line in SCRIPT.read_text().splitlines()
             if re.search(r"-m (pip|venv)\b|\$\{pip\[@\]\}", line) and not line.lstrip().startswith("local ")]
    assert calls and all("gpulab_step" in line for line in calls), calls


def test_servers_do_not_compile_rfc3987_grammars_at_import():
    """Issue 16: rfc3987-syntax compiled ~35 Lark grammars whenever jupyter_server was imported
    (2.3 s of every server's and run's start); the environment leaves it out."""
    probe = "import sys, jupyter_server.serverapp; print('rfc3987_syntax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
