"""Project folders end to end, as root: real system accounts, real servers and kernels, real ACLs.

Each user's server runs under their own account with the groups it started with; files are
written and read through each server's contents API (the Jupyter server process does the
I/O) or by code in the user's running kernel. Not covered here: NFS-backed roots (ACL
support depends on the file system) and the Kubernetes layout (tests/unit).
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from gpulab.extensions.projects.storage import acl
from gpulab.extensions.projects.storage.system_groups import gid_of
from tests.support.hub import wait_for
from tests.support.kernels import Kernel
from tests.support.projects import Person, account, project_settings, status_of


pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def hub(module_hub_factory, projects_root, account_prefix):
    return module_hub_factory.start(project_settings(projects_root, account_prefix, "f", reconcile_interval=5))


def folder(hub, slug: str):
    from pathlib import Path

    return Path(hub.settings["projects"]["local"]["root"], slug, "files")


def group(hub, slug: str, access: str) -> str:
    return f"{hub.settings['projects']['local']['group_prefix']}{slug}-{access}"


def as_account(hub, user: str, *command: str) -> subprocess.CompletedProcess:
    """A fresh process of the user's account with the groups /etc/group gives it now."""
    entry = account(hub, user)
    return subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
                           *command], capture_output=True, text=True)


def test_members_share_a_folder_and_removal_takes_write_access_away_at_once(hub):
    alice, bob, carol, dave = (Person(hub, n) for n in ("alice", "bob", "carol", "dave"))
    alice.api("POST", "", {"name": "vision", "description": "computer vision"})
    alice.api("POST", "/vision/members", {"name": "bob", "role": "editor"})
    alice.api("POST", "/vision/members", {"name": "carol", "role": "viewer"})
    for person in (alice, bob, carol, dave):
        hub.spawn(person.name)

    # bob writes from his server; the file belongs to the editors' group and the ACL says rw for them
    bob.write("projects/vision/notes.md", "from bob\n")
    on_disk = folder(hub, "vision") / "notes.md"
    info = on_disk.stat()
    assert info.st_uid == account(hub, "bob").pw_uid
    assert info.st_gid == gid_of(group(hub, "vision", "rw"))
    rendered = acl.render(acl.get_acl(on_disk))
    assert f"group:{gid_of(group(hub, 'vision', 'rw'))}:rwx" in rendered and "mask::rw-" in rendered  # rw for editors
    assert f"group:{gid_of(group(hub, 'vision', 'ro'))}:r-x" in rendered and "other::---" in rendered

    # alice (maintainer) edits bob's file from her server; bob sees her edit
    alice.write("projects/vision/notes.md", "from bob\nand alice\n")
    assert bob.read("projects/vision/notes.md") == "from bob\nand alice\n"

    # carol (viewer) reads it and cannot write it, nor create a file
    assert carol.read("projects/vision/notes.md") == "from bob\nand alice\n"
    assert status_of(lambda: carol.write("projects/vision/notes.md", "carol was here")) == 403
    assert status_of(lambda: carol.write("projects/vision/carol.md", "new")) == 403
    assert on_disk.read_text() == "from bob\nand alice\n"

    # dave (not a member) has no link, and his kernel cannot open the file by its path
    assert status_of(lambda: dave.read("projects/vision/notes.md")) == 404
    with pytest.raises(RuntimeError, match="PermissionError"):
        Kernel(hub.url, "dave", dave.token).run(f"open({str(on_disk)!r}).read()")

    # carol cannot add members; bob (editor) neither
    assert status_of(lambda: carol.api("POST", "/vision/members", {"name": "dave", "role": "viewer"})) == 403
    assert status_of(lambda: bob.api("POST", "/vision/members", {"name": "dave", "role": "viewer"})) == 403

    # bob's kernel writes through the link while he is a member ...
    kernel = Kernel(hub.url, "bob", bob.token)
    kernel.run("open('projects/vision/kernel.txt', 'w').write('bob kernel\\n')")
    rw_gid = gid_of(group(hub, "vision", "rw"))
    assert str(rw_gid) in kernel.run("import os; print(os.getgroups())")

    # ... and the moment alice removes him, the same running kernel can no longer write or read,
    # although it still holds the editors' group it started with
    alice.api("DELETE", "/vision/members/user/bob")
    assert str(rw_gid) in kernel.run("import os; print(os.getgroups())")
    for code in (f"open({str(on_disk)!r}, 'a').write('late edit')", f"open({str(on_disk)!r}).read()"):
        with pytest.raises(RuntimeError, match="PermissionError"):
            kernel.run(code)
    assert status_of(lambda: bob.read("projects/vision/notes.md")) == 404  # his link is gone too
    assert (folder(hub, "vision") / "kernel.txt").read_text() == "bob kernel\n"
    assert "late edit" not in on_disk.read_text()
    assert "bob" not in hub.api.request("GET", "hub/api/groups/project:vision:editor")["users"]
    assert account(hub, "bob").pw_name not in subprocess.run(
        ["getent", "group", group(hub, "vision", "rw")], capture_output=True, text=True).stdout

    history = alice.api("GET", "/vision/audit")["entries"]
    assert [(e["action"], e["subject"]) for e in history][:3] == [
        ("remove-member", "bob"), ("add-member", "carol"), ("add-member", "bob")]


def test_files_stay_writable_by_every_editor_whatever_the_writer_s_umask(hub):
    """tljh#986: with setgid alone, a file written under umask 077 locks the other editors out."""
    erin = Person(hub, "erin")
    hub.create_user("fay")  # a member; she only writes files, through her server
    erin.api("POST", "", {"name": "drift"})
    erin.api("POST", "/drift/members", {"name": "fay", "role": "editor"})
    hub.spawn("erin")  # creates erin's account and links; fay's comes from her spawn
    hub.spawn("fay")
    shared = folder(hub, "drift")
    made = as_account(hub, "erin", "sh", "-c", f"umask 077; mkdir {shared}/sub; echo one > {shared}/sub/a.txt")
    assert made.returncode == 0, made.stderr
    appended = as_account(hub, "fay", "sh", "-c", f"echo two >> {shared}/sub/a.txt; echo new > {shared}/sub/b.txt")
    assert appended.returncode == 0, appended.stderr
    assert (shared / "sub" / "a.txt").read_text() == "one\ntwo\n"
    assert stat.S_IMODE(os.stat(shared / "sub").st_mode) & stat.S_ISGID  # setgid propagates to new folders


def test_demotion_takes_effect_at_the_next_server_start_and_new_members_at_once(hub):
    gus, hal, ida = Person(hub, "gus"), Person(hub, "hal"), Person(hub, "ida")
    gus.api("POST", "", {"name": "speech"})
    gus.api("POST", "/speech/members", {"name": "hal", "role": "editor"})
    for person in (gus, hal, ida):
        hub.spawn(person.name)
    hal.write("projects/speech/hal.txt", "v1")
    on_disk = folder(hub, "speech") / "hal.txt"
    hal_kernel, ida_kernel = Kernel(hub.url, "hal", hal.token), Kernel(hub.url, "ida", ida.token)

    # hal demoted to viewer: his running server still holds write access, so the gate shuts for him
    gus.api("PATCH", "/speech/members/user/hal", {"role": "viewer"})
    assert on_disk.stat().st_uid == 0  # an owner could write their own file whatever their groups
    assert status_of(lambda: hal.read("projects/speech/hal.txt")) != 200
    with pytest.raises(RuntimeError, match="PermissionError"):
        hal_kernel.run(f"open({str(on_disk)!r}, 'a').write('v2')")
    # ida added while her server runs (issue 15 item 2): her running kernel reads at once, through
    # her own ACL entries, and cannot write
    gus.api("POST", "/speech/members", {"name": "ida", "role": "viewer"})
    assert ida_kernel.run("import os; print(os.path.islink('projects/speech'))") == "True\n"
    assert ida_kernel.run(f"print(open({str(on_disk)!r}).read())") == "v1\n"
    with pytest.raises(RuntimeError, match="PermissionError"):
        ida_kernel.run(f"open({str(on_disk)!r}, 'a').write('ida')")
    ida_uid = account(hub, "ida").pw_uid
    assert ida_uid in acl.user_entries(acl.get_acl(folder(hub, "speech")))

    for person in (hal, ida):
        hub.stop_server(person.name)
        hub.spawn(person.name)
    # after the restart hal reads but cannot write, and ida reads
    wait_for(lambda: status_of(lambda: hal.read("projects/speech/hal.txt")) == 200, 30, "hal's gate to reopen")
    assert status_of(lambda: hal.write("projects/speech/hal.txt", "v2")) == 403
    assert ida.read("projects/speech/hal.txt") == "v1"
    # ida's new server holds the group: her own entries go, everywhere (at the spawn, or at the next
    # reconcile when her old server's kernel was still exiting then)
    for path in (folder(hub, "speech"), on_disk):
        wait_for(lambda: ida_uid not in acl.user_entries(acl.get_acl(path)), 30, f"ida's entries on {path} to go")


def test_a_creator_with_a_running_server_uses_the_new_folder_at_once(hub):
    """Issue 15 item 2: the creator's running server could not read ~/projects/<name> (an
    "Unhandled error") until it restarted; a member removed later loses it at once."""
    kim, lee = Person(hub, "kim"), Person(hub, "lee")
    for person in (kim, lee):
        hub.spawn(person.name)
    kim.api("POST", "", {"name": "live"})
    kim.write("projects/live/plan.md", "from kim's running server\n")
    kim.api("POST", "/live/members", {"name": "lee", "role": "editor"})
    lee.write("projects/live/plan.md", "edited by lee, also without a restart\n")
    assert kim.read("projects/live/plan.md") == "edited by lee, also without a restart\n"
    kim.api("DELETE", "/live/members/user/lee")
    assert status_of(lambda: lee.read("projects/live/plan.md")) != 200
    lee_uid = account(hub, "lee").pw_uid
    assert lee_uid not in acl.user_entries(acl.get_acl(folder(hub, "live") / "plan.md"))


def test_deleting_a_project_keeps_its_files_in_the_trash(hub):
    jo = Person(hub, "jo")
    jo.api("POST", "", {"name": "scratch"})
    hub.spawn("jo")
    jo.write("projects/scratch/keep.txt", "keep me")
    jo.api("DELETE", "/scratch")
    root = folder(hub, "scratch").parent.parent
    trashed = list((root / ".trash").glob("scratch-*/files/keep.txt"))
    assert [p.read_text() for p in trashed] == ["keep me"]
    assert not (root / "scratch").exists()
    assert gid_of(group(hub, "scratch", "rw")) is None and gid_of(group(hub, "scratch", "ro")) is None
    assert status_of(lambda: jo.read("projects/scratch/keep.txt")) == 404
    assert status_of(lambda: hub.api.request("GET", "hub/api/groups/project:scratch:maintainer")) == 404
