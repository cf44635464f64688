"""A job's snapshot: the folder it was submitted from, as a gzipped tar (pack, check, unpack).

The CLI packs the working folder (or `--dir`) when the job is submitted, so later edits do
not change the job, and the folder may be on a laptop the hub cannot see. The scheduler
checks what it is sent before storing it; the runner unpacks it as the job's owner.
Only regular files and folders travel: links could point anywhere on the machine that
unpacks them, and names are checked to stay inside the folder.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

LIMIT_BYTES = 64 << 20  # the files' total size; larger data belongs in a project folder or storage
# Not worth sending: version control, caches, and the job's own results from an earlier run.
SKIPPED = {".git", "__pycache__", ".ipynb_checkpoints", ".venv", "outputs"}


class SnapshotError(Exception):
    """The folder or the archive cannot be a job's snapshot; the message says why."""


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def files_of(folder: Path) -> list[Path]:
    """The regular files a snapshot of `folder` holds, relative to it (skipped folders left out)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(folder))
    return found


def pack(folder: Path, limit: int = LIMIT_BYTES) -> bytes:
    """`folder` as a gzipped tar; SnapshotError (before reading a byte) when its files pass `limit`."""
    if not folder.is_dir():
        raise SnapshotError(f"{folder}: no such folder")
    files = files_of(folder)
    total = sum((folder / f).stat().st_size for f in files)
    if total > limit:
        biggest = sorted(files, key=lambda f: (folder / f).stat().st_size, reverse=True)[:3]
        raise SnapshotError(
            f"{folder} holds {_mib(total)} of files; a job's snapshot is at most {_mib(limit)} "
            f"(largest: {', '.join(f'{f} ({_mib((folder / f).stat().st_size)})' for f in biggest)}). "
            "Submit from a smaller folder (`gpulab run --dir`; from JupyterLab, the script's folder is sent), "
            "or keep data in a project folder and read it from there")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for relative in files:
            archive.add(folder / relative, arcname=str(PurePosixPath(*relative.parts)), recursive=False)
    return buffer.getvalue()


def _members(archive: tarfile.TarFile, limit: int) -> list[tarfile.TarInfo]:
    members, total = [], 0
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not member.name:
            raise SnapshotError(f"the snapshot names {member.name!r}, outside its folder")
        if not (member.isfile() or member.isdir()):
            raise SnapshotError(f"the snapshot holds {member.name!r}, which is not a file or a folder")
        total += member.size
        if total > limit:
            raise SnapshotError(f"the snapshot's files pass {_mib(limit)}, the most a job may carry")
        members.append(member)
    return members


def check(data: bytes, limit: int = LIMIT_BYTES) -> int:
    """The number of files in a snapshot; SnapshotError when it is not one gpulab would unpack."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            return sum(1 for m in _members(archive, limit) if m.isfile())
    except (tarfile.TarError, EOFError, OSError) as error:
        raise SnapshotError(f"the snapshot is not a gzipped tar archive ({error})") from None


def unpack(data: bytes, destination: Path, limit: int = LIMIT_BYTES) -> None:
    """Extract into `destination` (which exists), files with the unpacking user's own permissions."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in _members(archive, limit):
            target = destination.joinpath(*PurePosixPath(member.name).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source_file = archive.extractfile(member)
            if source_file is None:
                continue  # (_members passes only folders and regular files: this is not reached)
            with source_file as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            if member.mode & 0o111:  # scripts stay executable; nothing else of the sender's modes is kept
                target.chmod(target.stat().st_mode | 0o100)
