"""Jobs' pure parts: snapshots, the runner's side, log chunks, claims over several nodes, the
command line's `--`, and the API's description of every route."""

from __future__ import annotations

import io
import os
import re
import tarfile
from importlib import resources
from pathlib import Path

import pytest

from gpulab.compute.claims import ClusterPool, OverQuota, Purpose, Standing, claim
from gpulab.compute.profiles import GpuRequest, Profile
from gpulab.extensions.scheduler import api
from gpulab.extensions.scheduler.core import RunStorage, whole_characters
from gpulab.extensions.scheduler.job_execution import artifacts_of, execute
from gpulab.extensions.scheduler.runner import run_job
from gpulab.extensions.scheduler.snapshots import SnapshotError, check, pack, unpack
from gpulab.hub_config.services.errors import Invalid
from gpulab.hub_config import cli
from tests.support.openapi import load_spec


# ---------------------------------------------------------------- snapshots


def test_a_snapshot_carries_the_folders_files_and_leaves_out_caches_links_and_old_outputs(tmp_path):
    folder = tmp_path / "project"
    (folder / "pkg").mkdir(parents=True)
    (folder / "train.py").write_text("print('hi')")
    (folder / "run.sh").write_text("#!/bin/sh\necho run")
    (folder / "run.sh").chmod(0o755)
    (folder / "pkg" / "model.py").write_text("W = 1")
    for skipped in (".git", "__pycache__", "outputs", ".venv"):
        (folder / skipped).mkdir()
        (folder / skipped / "x").write_text("not sent")
    (folder / "passwd").symlink_to("/etc/passwd")
    data = pack(folder)
    assert check(data) == 3
    target = tmp_path / "unpacked"
    target.mkdir()
    unpack(data, target)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == \
        ["pkg/model.py", "run.sh", "train.py"]
    assert os.access(target / "run.sh", os.X_OK) and not os.access(target / "train.py", os.X_OK)


def test_a_folder_over_the_limit_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 600)
    (tmp_path / "b.bin").write_bytes(b"x" * 500)
    with pytest.raises(SnapshotError, match=r"holds 0\.0 MiB of files; a job's snapshot is at most 0\.0 MiB "
                                            r"\(largest: a\.bin \(0\.0 MiB\), b\.bin"):
        pack(tmp_path, limit=1000)
    with pytest.raises(SnapshotError, match="no such folder"):
        pack(tmp_path / "missing")


def archive(*members: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def member(name: str, kind=tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


@pytest.mark.parametrize("data, message", [
    (archive(member("../escape", size=1), data=b"x"), "outside its folder"),
    (archive(member("/etc/cron.d/x", size=1), data=b"x"), "outside its folder"),
    (archive(member("link", tarfile.SYMTYPE, link="/etc/shadow")), "not a file or a folder"),
    (archive(member("dev", tarfile.CHRTYPE)), "not a file or a folder"),
    (archive(member("big", size=2000), data=b"x" * 2000), "pass 0.0 MiB"),
    (b"not a tar", "not a gzipped tar archive"),
], ids=["parent-folder", "absolute-path", "symlink", "device", "too-big", "not-a-tar"])  # gzip bytes hold the time
def test_an_archive_gpulab_would_not_unpack_is_refused(data, message, tmp_path):
    with pytest.raises(SnapshotError, match=re.escape(message)):
        check(data, limit=1000)
    with pytest.raises((SnapshotError, tarfile.TarError)):
        unpack(data, tmp_path, limit=1000)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the runner's side


def test_a_job_runs_in_its_snapshot_and_its_outputs_are_listed(tmp_path, capfd):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "job.py").write_text("import os, sys\nos.makedirs('outputs/a', exist_ok=True)\n"
                                   "open('outputs/a/w.txt', 'w').write('w')\nprint('ran', sys.argv[1])\nsys.exit(4)\n")
    work = tmp_path / "work"
    work.mkdir()
    status, error, seconds, code = execute({"command": ["python", "job.py", "x"]}, pack(folder), work)
    assert (status, code, error) == ("FAILED", 4, {"message": "the command exited with status 4"})
    assert "ran x" in capfd.readouterr().out and artifacts_of(work) == ["outputs/a/w.txt"]
    status, error, _, code = execute({"command": ["no-such-program-xyz"]}, pack(folder), tmp_path / "work")
    assert (status, code) == ("FAILED", 127) and "command not found" in error["message"]


@pytest.mark.parametrize("path", ["outputs/../log.txt", "outputs/a/../../x", "/etc/passwd", "log.txt", "outputs/",
                                  "outputs//x", "outputs/./x", "other/outputs/x"])
def test_an_artifact_path_stays_under_the_jobs_outputs(tmp_path, path):
    with pytest.raises(Invalid, match="is not a path under outputs/"):
        RunStorage(tmp_path).artifact("r1", path)
    assert RunStorage(tmp_path).artifact("r1", "outputs/a/b.txt") == tmp_path / "r1" / "artifacts" / "outputs/a/b.txt"


def test_a_log_chunk_never_ends_inside_a_character():
    text = "ünïcode ✓".encode()
    assert whole_characters(text) == text
    assert whole_characters(text[:-1]) == "ünïcode ".encode()
    assert whole_characters(text[:-2]) == "ünïcode ".encode()
    assert whole_characters("ü".encode()[:1]) == b"" and whole_characters(b"") == b""


# ---------------------------------------------------------------- several nodes


def test_a_multi_node_claim_counts_every_nodes_gpus_and_needs_a_cluster():
    gpu2 = Profile("gpu-2", "2 GPUs", gpu=GpuRequest(2))
    quotas = {"default": {"max_gpus": 4}, "users": {}, "groups": {"ml": {"max_gpus": 6}}}
    pool = ClusterPool(lambda: {"ann": 1})
    with pytest.raises(OverQuota, match="ann holds 1 of 4 GPUs allowed and this needs 4 more"):
        claim("ann", [], Purpose.run("7"), gpu2, quotas=quotas, standing=Standing(), pool=pool, nodes=2)
    assert claim("ann", [], Purpose.run("7"), gpu2, quotas=quotas, standing=Standing(), pool=ClusterPool(dict),
                 nodes=2).devices == ()

    class Local:
        def take(self, *args):
            raise AssertionError("a machine's pool is never asked for several nodes")

    with pytest.raises(ValueError, match="only a cluster's pool"):
        claim("ann", [], Purpose.run("7"), gpu2, quotas=quotas, standing=Standing(), pool=Local(), nodes=2)


# ---------------------------------------------------------------- the command line and the API


def test_only_gpulab_run_takes_what_follows_a_double_dash(capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["schedule", "list", "--", "x"])
    assert refused.value.code == 2 and "'--' belongs to `gpulab run`" in capsys.readouterr().err
    parsed = {}
    parser = cli.build_parser()
    args = parser.parse_args(["run", "train.py", "--profile", "gpu-1"])
    assert (args.notebook, args.profile, args.trailing) == ("train.py", "gpu-1", [])
    for action in parser._subparsers._group_actions[0].choices["run"]._actions:
        parsed[action.dest] = action
    assert parsed["notebook"].nargs == "?"


def test_every_scheduler_route_is_described_in_its_openapi_document():
    spec = load_spec(Path(str(resources.files("gpulab.extensions.scheduler") / "openapi.yaml")))
    placeholder = re.compile(r"\{[^}]+\}")
    described = {(placeholder.sub("{}", template), method.upper()) for template, item in spec["paths"].items()
                 for method in item if method in ("get", "post", "put", "patch", "delete")}
    group = re.compile(r"\((?:[^()]|\([^()]*\))*\)")
    served = {("/" + group.sub("{}", route), method) for route, handler in api.ROUTES
              if route and not route.startswith("(?:")
              for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
              if getattr(handler, method.lower()) is not getattr(api.ApiHandler, method.lower())}
    assert served == described


def test_option_flags_become_profile_options_as_the_spawn_api_takes_them():
    from gpulab.extensions.scheduler.cli import UsageError, profile_options

    assert profile_options(["image=scipy", "size--unlisted-choice=a=b"]) == {
        "image": "scipy", "size--unlisted-choice": "a=b"}  # the first = splits
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        profile_options(["image"])


class RefusingReporter:
    """Stands in for the scheduler's side of a run: hands over the snapshot, refuses one artifact."""

    def __init__(self, snapshot: bytes, refused: str):
        self._snapshot, self.refused = snapshot, refused
        self.uploaded: list[str] = []
        self.events: list[dict] = []

    def snapshot(self) -> bytes:
        return self._snapshot

    def upload_artifact(self, name: str, data: bytes) -> None:
        if name == self.refused:
            raise RuntimeError("413: too large for the service")
        self.uploaded.append(name)

    def event(self, **fields) -> None:
        self.events.append(fields)


def test_a_refused_artifact_keeps_the_others_and_the_jobs_own_error(tmp_path, monkeypatch, capfd):
    """One artifact the service refuses is left out with a line in the log; the job still reports
    how it ended, with its own error (the refusal's exception once shadowed it, and the finished
    event failed with an UnboundLocalError)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "job.py").write_text("import os, sys\nos.makedirs('outputs', exist_ok=True)\n"
                                   "open('outputs/big.bin', 'w').write('b')\nopen('outputs/ok.txt', 'w').write('o')\n"
                                   "sys.exit(3)\n")
    reporter = RefusingReporter(pack(folder), "outputs/big.bin")
    work = tmp_path / "work"
    work.mkdir()
    code = run_job({"command": ["python", "job.py"]}, reporter, work)
    assert code == 3 and reporter.uploaded == ["outputs/ok.txt"]
    assert "outputs/big.bin not kept: 413" in capfd.readouterr().err
    [finished] = reporter.events
    assert finished["kind"] == "finished" and finished["status"] == "FAILED"
    assert finished["error"] == {"message": "the command exited with status 3"}
