"""The projects feature's pure pieces: ACL bytes, group names, hub-group plans, sign-in groups,
Kubernetes mounts, the apply step, and the OpenAPI document against the routes."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.extensions.projects import api
from gpulab.extensions.projects.config import OAUTH_SCOPES, SERVICE_SCOPES, group_prefix
from gpulab.extensions.projects.sign_in import ProjectGroupsAtSignIn, groups_with_projects
from gpulab.extensions.projects.storage import acl
from gpulab.extensions.projects.storage.kubernetes import claim_manifest, project_volumes, with_project_volumes
from gpulab.extensions.projects.storage.local import LocalStorage, default_root
from gpulab.extensions.projects.storage.system_groups import group_name, held_groups, parse_status
from gpulab.extensions.projects.store import Member, Project
from gpulab.extensions.projects.sync import desired_groups, effective_members
from gpulab.extensions.projects.views import iso
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.settings import bundled_schema, deep_merge, with_defaults
from gpulab.hub_config.typed_settings import Settings
from gpulab.spawner.backends.kubernetes.manifests import PodChanges
from tests.support.openapi import load_spec
from tests.support.settings import typed_settings

NOW = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)


def settings(**sections) -> Settings:
    return typed_settings(deep_merge({"hub": {"data_dir": "/srv/gpulab/data"}}, sections))


# ---------------------------------------------------------------- ACLs


def test_an_acl_encodes_as_the_kernel_stores_it():
    entries = acl.build("rwx", "r-x", "r-x", users={65534: "r-x"})
    # the bytes `setfacl -m u:nobody:rx` writes on a 0755 folder (read back with os.getxattr)
    assert acl.encode(entries).hex() == (
        "02000000" "0100" "0700" "ffffffff" "0200" "0500" "feff0000" "0400" "0500" "ffffffff"
        "1000" "0500" "ffffffff" "2000" "0500" "ffffffff")
    assert acl.decode(acl.encode(entries)) == entries
    assert acl.render(entries) == ["user::rwx", "user:65534:r-x", "group::r-x", "mask::r-x", "other::r-x"]


def test_the_mask_covers_named_entries_and_plain_acls_have_none():
    shared = acl.build("rwx", "rwx", "---", groups={1001: "rwx", 1002: "r-x"})
    assert acl.render(shared) == ["user::rwx", "group::rwx", "group:1001:rwx", "group:1002:r-x", "mask::rwx",
                                  "other::---"]
    gate = acl.build("rwx", "---", "---", users={1005: "--x", 1003: "--x"})
    assert acl.render(gate) == ["user::rwx", "user:1003:--x", "user:1005:--x", "group::---", "mask::--x",
                                "other::---"]
    assert [e.tag for e in acl.build("rwx", "---", "---")] == [acl.USER_OBJ, acl.GROUP_OBJ, acl.OTHER]


@pytest.mark.root
def test_an_acl_written_here_reads_back_with_getfacl(tmp_path):
    import subprocess

    folder = tmp_path / "shared"
    folder.mkdir()
    acl.set_acl(folder, acl.build("rwx", "rwx", "---", groups={65534: "r-x"}))
    acl.set_acl(folder, acl.build("rwx", "rwx", "---", groups={65534: "r-x"}), acl.DEFAULT)
    text = subprocess.run(["getfacl", "--numeric", "--omit-header", str(folder)], capture_output=True,
                          text=True, check=True).stdout.split()
    assert "group:65534:r-x" in text and "default:group:65534:r-x" in text and "default:other::---" in text
    assert acl.get_acl(tmp_path) == []  # no ACL beyond the mode bits


# ---------------------------------------------------------------- system groups and processes


def test_group_names_fit_in_32_characters_and_stay_readable():
    assert group_name("gpulab-p-", "vision", "rw") == "gpulab-p-vision-rw"
    long = group_name("gpulab-p-", "a-very-long-project-name-for-testing-x", "ro")
    assert len(long) <= 32 and long.startswith("gpulab-p-a-very") and long.endswith("-ro")
    assert long != group_name("gpulab-p-", "a-very-long-project-name-for-testing-y", "ro")


def test_process_status_gives_uid_and_every_group():
    status = "Name:\tpython\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t27 1005 1006 \n"
    assert parse_status(status) == (1001, {1001, 27, 1005, 1006})
    assert parse_status("Uid:\t5\t5\t5\t5\nGid:\t7\t7\t7\t7\nGroups:\t\n") == (5, {7})
    assert parse_status("Name: kthread\n") is None
    assert os.getgid() in held_groups({os.getuid()})[os.getuid()]


# ---------------------------------------------------------------- hub groups and sign-in


def project(*members: tuple[str, str, str]) -> Project:
    return Project("vision", "", "alice", NOW, NOW, tuple(Member(k, n, r, "alice", NOW) for k, n, r in members))


def test_each_user_lands_in_the_group_of_their_highest_role():
    p = project(("user", "alice", "maintainer"), ("user", "dave", "viewer"), ("group", "ml-team", "editor"),
                ("group", "interns", "viewer"))
    members = effective_members(p, {"ml-team": {"dave", "erin"}, "interns": {"erin", "finn"}})
    assert members == {"alice": "maintainer", "dave": "editor", "erin": "editor", "finn": "viewer"}
    assert desired_groups("vision", members) == {
        "project:vision:viewer": {"finn"}, "project:vision:editor": {"dave", "erin"},
        "project:vision:maintainer": {"alice"}}


def test_sign_in_keeps_project_groups_and_drops_provider_ones_posing_as_them():
    assert groups_with_projects(["ml-team", "project:secret:maintainer"], {"vision": "editor"}) == [
        "ml-team", "project:vision:editor"]
    assert groups_with_projects([], {}) == []


class FakeStore:
    def roles_of(self, user, groups):
        return {"vision": "editor"} if "ml-team" in groups else {}


class Authenticator:
    manage_groups = True


def test_the_sign_in_hook_changes_groups_only_when_the_provider_manages_them():
    hook = ProjectGroupsAtSignIn("sqlite://")
    hook._store = FakeStore()
    signed_in = asyncio.run(hook(Authenticator(), None, {"name": "oscar", "groups": ["ml-team"]}))
    assert signed_in["groups"] == ["ml-team", "project:vision:editor"]
    unmanaged = Authenticator()
    unmanaged.manage_groups = False
    assert asyncio.run(hook(unmanaged, None, {"name": "oscar", "groups": ["ml-team"]}))["groups"] == ["ml-team"]
    assert asyncio.run(hook(Authenticator(), None, {"name": "oscar", "groups": None}))["groups"] is None


# ---------------------------------------------------------------- Kubernetes


def k8s(**overrides) -> dict:
    schema = bundled_schema()["properties"]["projects"]["properties"]["kubernetes"]
    return {**with_defaults(schema, {}), **overrides}


def test_members_mount_one_sub_path_per_project_read_only_for_viewers():
    volumes, mounts = project_volumes({"vision": "editor", "audio": "viewer"}, k8s(claim_name="team-rwx"))
    assert volumes == [{"name": "gpulab-projects", "persistentVolumeClaim": {"claimName": "team-rwx"}}]
    assert mounts == [
        {"name": "gpulab-projects", "mountPath": "/home/jovyan/projects/audio", "subPath": "projects/audio",
         "readOnly": True},
        {"name": "gpulab-projects", "mountPath": "/home/jovyan/projects/vision", "subPath": "projects/vision",
         "readOnly": False},
    ]
    assert project_volumes({}, k8s()) == ([], [])


def test_the_claim_comes_from_a_storage_class_or_exists_already():
    assert claim_manifest(k8s(claim_name="team-rwx", storage_class="nfs"), "hub") is None
    assert claim_manifest(k8s(), "hub") is None
    assert claim_manifest(k8s(storage_class="nfs-client", size="2Ti"), "gpulab") == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "gpulab-projects", "namespace": "gpulab",
                     "labels": {"app.kubernetes.io/part-of": "gpulab", "gpulab.dev/component": "projects"}},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs-client",
                 "resources": {"requests": {"storage": "2Ti"}}},
    }


def test_the_spawner_hook_adds_mounts_to_a_profile_s_pod_changes():
    base = PodChanges(image="img", resources={}, volumes=[{"name": "dshm", "emptyDir": {}}],
                      volume_mounts=[{"name": "dshm", "mountPath": "/dev/shm"}])
    changed = with_project_volumes(base, ["ml-team", "project:vision:viewer"], k8s(sub_path="", mount_path="/p/"))
    assert changed.volumes[0]["name"] == "dshm" and changed.volumes[1]["name"] == "gpulab-projects"
    assert changed.volume_mounts[1] == {"name": "gpulab-projects", "mountPath": "/p/vision", "subPath": "vision",
                                        "readOnly": True}
    assert base.volumes == [{"name": "dshm", "emptyDir": {}}]  # the input is not modified


# ---------------------------------------------------------------- the apply step


def test_the_service_gets_its_role_a_nav_link_and_the_hub_its_hooks():
    c = apply_config(settings(), Config())
    service = next(s for s in c.JupyterHub.services if s["name"] == "projects")
    assert service["url"] == "http://127.0.0.1:8082" and service["oauth_client_allowed_scopes"] == OAUTH_SCOPES
    assert service["command"][-1] == "gpulab.extensions.projects.service"
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["projects-service"]["scopes"] == SERVICE_SCOPES
    assert {"access:services!service=projects", "shares!user", "read:users:name"} <= set(roles["user"]["scopes"])
    assert {"label": "Projects", "url": "/services/projects/"} in c.JupyterHub.template_vars["gpulab_nav"]
    assert "access:services!service=projects" in c.Spawner.server_token_scopes
    assert "--HubOAuth.cache_max_age=30" in c.Spawner.args
    assert c.Spawner.environment["GPULAB_URL"] == "http://127.0.0.1:8000/"
    assert type(c.Spawner.pre_spawn_hook).__name__ == "ProjectFolders"
    assert type(c.Authenticator.post_auth_hook).__name__ == "ProjectGroupsAtSignIn"
    assert "projects" not in service["command"][1:-1]  # settings travel in the environment, not the command line


def test_hooks_already_configured_run_first():
    c = Config()
    c.Spawner.pre_spawn_hook = earlier = lambda spawner: None
    c.Authenticator.post_auth_hook = earlier_auth = lambda authenticator, handler, model: model
    apply_config(settings(), c)
    assert c.Spawner.pre_spawn_hook.hooks[0] is earlier
    assert type(c.Spawner.pre_spawn_hook.hooks[1]).__name__ == "ProjectFolders"
    assert c.Authenticator.post_auth_hook.hooks[0] is earlier_auth
    assert type(c.Authenticator.post_auth_hook.hooks[1]).__name__ == "ProjectGroupsAtSignIn"


def test_group_prefix_and_root_defaults():
    assert group_prefix(settings()) == "gpulab-p-"
    assert group_prefix(settings(spawner={"local": {"account_prefix": "lab-"}})) == "lab-p-"
    assert group_prefix(settings(projects={"local": {"group_prefix": "proj-"}})) == "proj-"
    assert settings(projects={"local": {"root": "shared"}}).projects.local.root == "/srv/gpulab/shared"
    assert default_root("", "/srv/gpulab/data", isolated=True) == Path("/srv/gpulab/projects")
    assert default_root("", "/srv/gpulab/data", isolated=False) == Path("/srv/gpulab/data/projects")


def test_times_are_utc_with_a_z():
    assert iso(NOW) == "2026-05-04T03:02:01Z"
    assert iso(NOW.replace(tzinfo=None)) == "2026-05-04T03:02:01Z"  # SQLite hands back naive UTC


# ---------------------------------------------------------------- the OpenAPI document


def test_every_api_route_and_method_is_described_and_nothing_else():
    spec = load_spec(Path(str(resources.files("gpulab.extensions.projects") / "openapi.yaml")))
    placeholder = re.compile(r"\{[^}]+\}")
    described = {(placeholder.sub("{}", template), method.upper()) for template, item in spec["paths"].items()
                 for method in item if method in ("get", "post", "put", "patch", "delete")}
    served = {("/" + route.replace("([^/]+)", "{}"), method) for route, handler in api.ROUTES
              for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
              if getattr(handler, method.lower()) is not getattr(api.ApiHandler, method.lower())}
    assert served == described


# ---------------------------------------------------------------- links in homes


def test_links_never_follow_a_folder_the_user_replaced_with_a_link(tmp_path):
    root, homes, elsewhere = tmp_path / "projects", tmp_path / "homes", tmp_path / "elsewhere"
    (homes / "mallory").mkdir(parents=True)
    elsewhere.mkdir()
    (homes / "mallory" / "projects").symlink_to(elsewhere)  # planted by the user
    (homes / "amy").mkdir()
    storage = LocalStorage(root, "x-", "x-", str(homes), str(tmp_path), isolated=False)
    storage.apply_project("vision", {"mallory": "editor", "amy": "viewer"})
    assert list(elsewhere.iterdir()) == []
    assert os.readlink(homes / "amy" / "projects" / "vision") == str(root / "vision" / "files")
    (homes / "amy" / "projects" / "mine").mkdir()  # the user's own folder is never touched
    storage.apply_project("vision", {"mallory": "editor"})
    assert sorted(p.name for p in (homes / "amy" / "projects").iterdir()) == ["mine"]
    storage.remove_project("vision", ["mallory"])
    assert not (root / "vision").exists() and len(list((root / ".trash").iterdir())) == 1


def test_a_link_into_an_earlier_projects_root_is_replaced_and_the_user_s_own_links_kept(tmp_path):
    """After the admin moves projects.local.root, members' links must follow; a link the user made
    to something else under the same name is left alone (and no project link is made)."""
    homes = tmp_path / "homes"
    (homes / "amy" / "projects").mkdir(parents=True)
    (homes / "bea" / "projects").mkdir(parents=True)
    (homes / "amy" / "projects" / "vision").symlink_to(tmp_path / "old-root" / "vision" / "files")
    (homes / "bea" / "projects" / "vision").symlink_to(tmp_path / "data")
    storage = LocalStorage(tmp_path / "projects", "x-", "x-", str(homes), str(tmp_path), isolated=False)
    storage.apply_project("vision", {"amy": "editor", "bea": "editor"})
    assert os.readlink(homes / "amy" / "projects" / "vision") == str(tmp_path / "projects" / "vision" / "files")
    assert os.readlink(homes / "bea" / "projects" / "vision") == str(tmp_path / "data")


def test_a_name_deleted_twice_within_a_second_goes_to_the_trash_twice(tmp_path):
    root = tmp_path / "projects"
    storage = LocalStorage(root, "x-", "x-", str(tmp_path / "homes"), str(tmp_path), isolated=False)
    for content in ("first", "second"):
        storage.check_available("vision")
        storage.apply_project("vision", {})
        (root / "vision" / "files" / "note.txt").write_text(content)
        storage.remove_project("vision", [])
    assert not (root / "vision").exists()
    kept = sorted(p.read_text() for p in (root / ".trash").glob("vision-*/files/note.txt"))
    assert kept == ["first", "second"]
