"""The projects service apart from root: its own database (moved once at upgrade), its own
account, and the root helper that alone changes project folders (issue 12, least privilege)."""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from traitlets.config import Config

from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.projects.database import MIGRATIONS, carry_over, projects_database_url, upgrade_projects_storage
from gpulab.extensions.projects.service import make_storage
from gpulab.extensions.projects.service_settings import ProjectsServiceSettings, StorageHelperSettings
from gpulab.extensions.projects.shared_servers import SharedServerStore
from gpulab.extensions.projects.storage import helper
from gpulab.extensions.projects.storage.helper import HelperStorage, Refused, StorageHelperError, check_request
from gpulab.extensions.projects.storage.local import LocalStorage
from gpulab.extensions.projects.store import ProjectStore
from gpulab.extensions.projects.sync import NoStorage
from gpulab.hub_config.services import root_helper
from gpulab.hub_config.services.config import RUN_AS_VARIABLE, pass_hub_environment, runs_as_own_account
from gpulab.hub_config.services.errors import Conflict
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.settings import deep_merge
from gpulab.hub_config.typed_settings import Settings
from tests.support.settings import handed_over, typed_settings

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def settings(**sections) -> Settings:
    return typed_settings(deep_merge({"hub": {"data_dir": "/srv/gpulab/data"}}, sections))


def stores(url: str) -> tuple[ProjectStore, SharedServerStore]:
    sessions = make_session_factory(make_engine(url))
    return ProjectStore(sessions, lambda: NOW), SharedServerStore(sessions, lambda: NOW)


def allow(project) -> None:
    return None


# ------------------------------------------------------------ configuration


def services(c: Config) -> dict[str, dict]:
    return {spec["name"]: spec for spec in c.JupyterHub.services}


def test_the_service_runs_as_its_own_account_with_its_own_database_and_a_root_helper():
    c = apply_config(settings(spawner={"local": {"account_prefix": "lab-"}}), Config())
    service, root_helper = services(c)["projects"], services(c)["projects-storage"]
    assert json.loads(service["environment"][RUN_AS_VARIABLE]) == {
        "name": "lab_svc-projects", "owns": ["/srv/gpulab/data/projects-service"]}
    served = json.loads(service["environment"]["GPULAB_SERVICE_SETTINGS"])
    assert served["database_url"] == "sqlite:////srv/gpulab/data/projects-service/projects.sqlite"
    assert served["storage_helper"] == "/srv/gpulab/data/projects-storage/storage.sock"
    # the helper: root (no account of its own), no HTTP, no hub role, only for a root hub
    assert "url" not in root_helper and RUN_AS_VARIABLE not in root_helper["environment"]
    assert root_helper["environment"]["GPULAB_SERVICE_ROOT_ONLY"] == "1"
    assert root_helper["command"][-2:] == ["-m", "gpulab.extensions.projects.storage.helper"]
    assert json.loads(root_helper["environment"]["GPULAB_SERVICE_SETTINGS"])["client"] == "lab_svc-projects"
    assert not any("projects-storage" in role.get("services", []) for role in c.JupyterHub.load_roles)
    shared = apply_config(settings(database={"url": "postgresql://gpulab@db/gpulab"}), Config())
    assert json.loads(services(shared)["projects"]["environment"]["GPULAB_SERVICE_SETTINGS"])[
        "database_url"] == "postgresql://gpulab@db/gpulab"


def test_a_hub_that_is_not_root_starts_no_helper_and_kubernetes_needs_none():
    c = apply_config(settings(), Config())
    pass_hub_environment(c, {}, 1234, euid=1000)
    assert "projects-storage" not in services(c) and "user" not in services(c)["projects"]
    assert "projects-storage" not in services(apply_config(settings(spawner={"backend": "kubernetes"}), Config()))


def test_the_hubs_hooks_read_the_services_database():
    from gpulab.extensions.projects.config import post_auth_hook, pre_spawn_hook

    values = settings()
    assert pre_spawn_hook(values).database_url == projects_database_url(values)
    assert post_auth_hook(values).database_url == projects_database_url(values)


def test_the_service_uses_the_helper_only_as_its_own_account(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    local = {"backend": "local", "root": str(tmp_path / "p"), "group_prefix": "g-", "account_prefix": "a-",
             "home_root": "", "data_dir": str(tmp_path)}
    plain = {"storage": local, "storage_helper": str(tmp_path / "s.sock")}
    as_me = {RUN_AS_VARIABLE: json.dumps({"name": me, "owns": []})}
    assert runs_as_own_account(as_me)
    assert not runs_as_own_account({RUN_AS_VARIABLE: json.dumps({"name": "x", "owns": []})})
    assert isinstance(make_storage(plain, as_me), HelperStorage)
    assert isinstance(make_storage(plain, {}), LocalStorage)
    assert isinstance(make_storage({**plain, "storage": {**local, "backend": "kubernetes"}}, as_me), NoStorage)


# ------------------------------------------------------------ the helper's checks


@pytest.mark.parametrize("request_, reason", [
    ({"op": "apply_project", "slug": "../x", "members": {}}, "not a project name"),
    ({"op": "check_available", "slug": "vision/../../etc"}, "not a project name"),
    ({"op": "remove_project", "slug": "Vision", "users": []}, "not a project name"),
    ({"op": "apply_project", "slug": 7, "members": {}}, "not a project name"),
    ({"op": "apply_user", "slug": "vision"}, "unknown operation 'apply_user'"),
    ({"op": "chown", "path": "/etc/shadow"}, "unknown operation 'chown'"),
    ({"slug": "vision"}, "JSON object with an \"op\""),
    (["apply_project"], "JSON object"),
    ({"op": "check_available", "slug": "vision", "root": "/"}, "takes exactly slug"),
    ({"op": "apply_project", "slug": "vision", "members": {"alice": "owner"}}, "unknown role 'owner'"),
    ({"op": "apply_project", "slug": "vision", "members": {"al\nice": "viewer"}}, "not a hub user name"),
    ({"op": "apply_project", "slug": "vision", "members": {"": "viewer"}}, "not a hub user name"),
    ({"op": "apply_project", "slug": "vision", "members": ["alice"]}, "members is an object"),
    ({"op": "remove_project", "slug": "vision", "users": "alice"}, "users is a list"),
    ({"op": "remove_project", "slug": "vision", "users": ["x" * 256]}, "not a hub user name"),
])
def test_the_helper_refuses_malformed_requests(request_, reason):
    with pytest.raises(Refused, match=reason.replace("(", r"\(")):
        check_request(request_, "gpulab-")


def test_the_helper_accepts_the_three_operations_of_the_service():
    assert check_request({"op": "check_available", "slug": "vision"}, "gpulab-") == ("check_available", ("vision",))
    assert check_request({"op": "apply_project", "slug": "vision", "members": {"alice@example.com": "editor"}},
                         "gpulab-") == ("apply_project", ("vision", {"alice@example.com": "editor"}))
    assert check_request({"op": "remove_project", "slug": "v2", "users": ["bob"]}, "gpulab-") == (
        "remove_project", ("v2", ["bob"]))


def test_the_helper_answers_through_its_socket_and_refuses_what_it_does_not_offer(tmp_path):
    """The real server and client over a Unix socket (the storage here without root: folders only)."""
    storage = LocalStorage(tmp_path / "projects", "g-", "a-", str(tmp_path / "homes"), str(tmp_path), isolated=False)
    path = tmp_path / "s.sock"
    server = root_helper.Server(path, lambda request, _fds: helper.answer(storage, request, "a-"), os.getuid(),
                                helper.HELPER_NAME)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HelperStorage(path, wait=2)
        client.check_available("vision")
        client.apply_project("vision", {"alice": "maintainer"})
        assert (tmp_path / "projects" / "vision" / "files").is_dir()
        with pytest.raises(Conflict, match="already exists"):
            client.check_available("vision")
        assert client.send({"op": "apply_project", "slug": "../x", "members": {}}) == {
            "refused": "not a project name: '../x'"}
        with pytest.raises(StorageHelperError, match="unknown operation 'rmtree'"):
            client.call({"op": "rmtree", "slug": "vision"})
        assert not (tmp_path / "x").exists() and (tmp_path / "projects" / "vision").is_dir()
        client.remove_project("vision", ["alice"])
        assert not (tmp_path / "projects" / "vision").exists()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(StorageHelperError, match="does not answer"):
        HelperStorage(tmp_path / "gone.sock", wait=0.3).check_available("vision")


# ------------------------------------------------------------ the move at upgrade


def old_install(data_dir: Path) -> str:
    """gpulab's database as an earlier version left it: projects, members, a share and the audit log in it."""
    data_dir.mkdir(exist_ok=True)
    url = f"sqlite:///{data_dir / 'state' / 'gpulab.sqlite'}"
    upgrade(url)
    projects, shares = stores(url)
    projects.create("vision", "computer vision", "alice")
    projects.add_member("vision", "user", "bob", "editor", "alice", allow)
    projects.add_member("vision", "group", "ml-team", "viewer", "alice", allow)
    projects.create("audio", "", "carol")
    shares.record("vision", "alice", "", "/user/alice/", ["bob"])
    return url


def test_projects_move_once_from_gpulabs_database_to_the_services(tmp_path):
    values = settings(hub={"data_dir": str(tmp_path / "data")})
    main = old_install(tmp_path / "data")
    before = stores(main)[0].list(), stores(main)[0].audit("vision"), stores(main)[1].list("vision")

    assert upgrade_projects_storage(values) == 2
    moved, shares = stores(projects_database_url(values))
    assert moved.list() == before[0]  # members, roles, who added them, when
    assert moved.audit("vision") == before[1]
    assert shares.list("vision") == before[2]
    assert moved.roles_of("dave", ["ml-team"]) == {"vision": "viewer"}
    assert stores(main)[0].list() == [] and stores(main)[0].audit("vision") == []  # moved, not copied
    assert stores(main)[1].list("vision") == []

    assert upgrade_projects_storage(values) == 0  # once
    assert moved.list() == before[0] and len(moved.audit("vision")) == len(before[1])
    moved.create("speech", "", "erin")  # the service goes on in its own file
    assert [p.slug for p in moved.list()] == ["audio", "speech", "vision"]


def test_an_interrupted_move_is_finished_without_doubling_a_project(tmp_path):
    main = old_install(tmp_path)
    target = f"sqlite:///{tmp_path / 'projects.sqlite'}"
    upgrade(target, MIGRATIONS)
    before = stores(main)[0].list()
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(tmp_path / "state" / "gpulab.sqlite") as original:  # the originals as they were before the delete
        original.execute(f"VACUUM INTO '{copy}'")
    assert carry_over(make_engine(main), make_engine(target)) == 2
    # the copy was committed, the originals were not deleted (the upgrade died in between)
    assert carry_over(make_engine(f"sqlite:///{copy}"), make_engine(target)) == 0
    assert stores(target)[0].list() == before and len(stores(target)[0].audit("vision")) == 4
    assert len(stores(target)[1].list("vision")) == 1
    assert stores(f"sqlite:///{copy}")[0].list() == []


def test_with_a_shared_database_nothing_moves(tmp_path):
    main = old_install(tmp_path)
    values = settings(hub={"data_dir": str(tmp_path)}, database={"url": main})
    assert upgrade_projects_storage(values) == 0
    assert len(stores(main)[0].list()) == 2 and not (tmp_path / "projects-service").exists()


def test_the_service_and_its_helper_read_back_the_settings_the_hub_sent():
    s = settings(projects={"creators": ["leads"], "local": {"root": "/srv/projects"}})
    c = apply_config(s, Config())
    service, helper = handed_over(c, "projects"), handed_over(c, "projects-storage")
    assert ProjectsServiceSettings.of(service).as_dict() == service
    assert StorageHelperSettings.of(helper).as_dict() == helper
    read = ProjectsServiceSettings.of(service)
    assert read.creators == ("leads",) and read.storage == StorageHelperSettings.of(helper).storage
    assert read.storage.root == "/srv/projects" and read.storage.group_prefix == "gpulab-p-"
