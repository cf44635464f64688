"""The pieces of JupyterLab's "Run as a gpulab job…" in the user's server (lab_jobs.py) and the
request body it shares with `gpulab run SCRIPT -- ARGS` (job_request.py)."""

from __future__ import annotations

import argparse
import base64
import io
import tarfile
from pathlib import Path

import pytest
from tornado import web

from gpulab.extensions.scheduler import cli
from gpulab.extensions.scheduler.job_request import job_request, script_command
from gpulab.extensions.scheduler.lab_jobs import (PREBUILT, arguments_of, labextension_folders, offered_profiles,
                                                  run_links, script_in_root)
from gpulab.extensions.scheduler.snapshots import pack


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "home" / "project").mkdir(parents=True)
    (tmp_path / "home" / "project" / "train.py").write_text("print('hi')\n")
    (tmp_path / "home" / "notes.txt").write_text("not a script\n")
    (tmp_path / "home" / "folder.py").mkdir()
    (tmp_path / "outside.py").write_text("print('outside')\n")
    (tmp_path / "home" / "link.py").symlink_to(tmp_path / "outside.py")
    return tmp_path / "home"


def refusal(root: Path, path: str) -> tuple[int, str]:
    with pytest.raises(web.HTTPError) as refused:
        script_in_root(root, path)
    return refused.value.status_code, refused.value.log_message


def test_a_script_inside_the_root_is_found(root):
    assert script_in_root(root, "project/train.py") == (root / "project" / "train.py").resolve()


@pytest.mark.parametrize("path, status, message", [
    ("../outside.py", 400, "'../outside.py' is outside the server's folder"),
    ("/etc/passwd", 400, "'/etc/passwd' is outside the server's folder"),
    ("link.py", 400, "'link.py' is outside the server's folder"),  # a link out of the root is followed first
    ("notes.txt", 400, "'notes.txt' is not a Python script (.py)"),
    ("missing.py", 404, "no such file: 'missing.py'"),
    ("folder.py", 400, "'folder.py' is not a file"),
    ("bad\0name.py", 400, "is not a file this server can read"),
])
def test_paths_that_are_not_a_script_of_the_server_are_refused_with_the_reason(root, path, status, message):
    got_status, got_message = refusal(root, path)
    assert got_status == status and message in got_message, (got_status, got_message)


def test_arguments_split_as_a_shell_splits_them():
    assert arguments_of("--lr 0.01 --note 'two words' \"x y\"") == ["--lr", "0.01", "--note", "two words", "x y"]
    assert arguments_of("") == []
    with pytest.raises(web.HTTPError) as refused:
        arguments_of("--note 'unclosed")
    assert refused.value.status_code == 400 and refused.value.log_message == "arguments: No closing quotation"


def test_the_dialog_offers_the_profiles_that_can_run_now():
    options = {"profiles": [
        {"id": "cpu", "display_name": "CPU", "default": True, "environments": [{"id": "e", "unavailable": None}]},
        {"id": "gpu-1", "display_name": "1 GPU", "default": False,
         "environments": [{"id": "e", "unavailable": "no GPU is free"}]},
        {"id": "big", "display_name": "Big", "default": False,
         "environments": [{"id": "a", "unavailable": "x"}, {"id": "b", "unavailable": None}]},
    ]}
    assert offered_profiles(options) == [{"id": "cpu", "display_name": "CPU", "default": True},
                                         {"id": "big", "display_name": "Big", "default": False}]


def test_run_links_point_into_the_scheduler_service_under_the_hub_prefix():
    assert run_links("/jhub/", "abc") == {"runs": "/jhub/services/scheduler/",
                                          "run": "/jhub/services/scheduler/api/runs/abc"}


def test_the_source_folder_is_offered_to_jupyterlab_only_when_the_install_has_no_copy(tmp_path):
    assert labextension_folders([str(tmp_path)]) == [str(PREBUILT)]
    (tmp_path / "@gpulab" / "jobs").mkdir(parents=True)
    (tmp_path / "@gpulab" / "jobs" / "package.json").write_text("{}")
    assert labextension_folders(["/nowhere", str(tmp_path)]) == []
    assert (PREBUILT / "@gpulab" / "jobs" / "package.json").is_file()


def test_the_lab_and_the_cli_send_the_same_body(root, monkeypatch):
    """What the server builds for the dialog is what `gpulab run train.py -- ARGS` sends from that folder."""
    folder = root / "project"
    monkeypatch.chdir(folder)
    args = argparse.Namespace(notebook="train.py", dir=None, trailing=["--lr", "0.01"], name=None, max_retries=0,
                              nodes=1, profile="cpu", environment=None, project=None, timeout_seconds=None,
                              option=None, notify_webhook=None, notify_email=None, notify_on=None)
    from_cli = cli.job_body(args)
    from_lab = job_request("script", script_command(folder / "train.py", folder, ["--lr", "0.01"]), "train",
                           folder, pack(folder), profile="cpu")
    # the same files; the archives' bytes differ only by gzip's time stamp
    assert [snapshot_files(body.pop("snapshot")) for body in (from_cli, from_lab)] == [["train.py"]] * 2
    assert from_cli == from_lab
    assert from_lab["command"] == ["python", "train.py", "--lr", "0.01"] and from_lab["source"] == str(folder)


def snapshot_files(encoded: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(encoded)), mode="r:gz") as archive:
        return archive.getnames()


def test_a_script_outside_the_snapshot_has_no_command(root):
    with pytest.raises(ValueError):
        script_command(root / "project" / "train.py", root / "elsewhere", [])


def test_options_left_to_the_scheduler_are_not_sent():
    body = job_request("command", ["echo"], "echo", Path("/x"), b"", profile=None, environment="cpu")
    assert "profile" not in body and body["environment"] == "cpu" and body["max_retries"] == 0
