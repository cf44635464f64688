"""The projects core's rules against a real SQLite database, with the hub replaced by a double."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade
from gpulab.extensions.projects.core import Projects, keeps_a_maintainer, role_in
from gpulab.extensions.projects.names import name_problem
from gpulab.extensions.projects.shared_servers import SharedServerStore
from gpulab.extensions.projects.store import ProjectStore
from gpulab.hub_config.services.errors import Conflict, Invalid, NotAllowed, NotFound
from tests.support.project_doubles import FakeDirectory, RecordingSync


class Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def world(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    sessions = make_session_factory(make_engine(url))
    clock = Clock()
    directory = FakeDirectory(
        {"alice": {}, "bob": {}, "carol": {}, "dave": {}, "root": {"admin": True}, "lead": {"groups": ["leads"]}},
        {"ml-team": ["dave"], "leads": ["lead"]})
    sync = RecordingSync(directory)
    projects = Projects(ProjectStore(sessions, clock), SharedServerStore(sessions, clock), directory, sync)
    return projects, directory, sync


def run(coroutine):
    return asyncio.run(coroutine)


def actor(projects, name):
    return run(projects.actor(name))


@pytest.mark.parametrize("name", ["vision", "nlp-2", "ab", "a" * 40, "x9-y8"])
def test_good_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a", "a" * 41, "../x", "x/y", "x\\y", ".x", "Vision", "9lives", "end-",
                                  "under_score", "api", "new", "projects", "ünï"])
def test_bad_names(name):
    assert name_problem(name)


@pytest.mark.parametrize("name", ["\uff41\uff50\uff49", "api\u00a0", " api ", "\u2003admin"])
def test_look_alikes_of_reserved_names_are_refused_as_those_names(name):
    assert "is reserved" in (name_problem(name) or "")


def test_a_name_is_created_in_its_normal_form(world):
    projects, _, _ = world
    assert run(projects.create(actor(projects, "alice"), " \uff56ision\u00a0")).slug == "vision"


def test_the_creator_becomes_maintainer_and_every_change_is_synced(world):
    projects, _, sync = world
    alice = actor(projects, "alice")
    project = run(projects.create(alice, "vision", "cv"))
    assert [(m.kind, m.name, m.role) for m in project.members] == [("user", "alice", "maintainer")]
    run(projects.add_member(alice, "vision", "user", "bob", "editor"))
    run(projects.set_role(alice, "vision", "user", "bob", "viewer"))
    run(projects.remove_member(alice, "vision", "user", "bob"))
    assert sync.synced == ["vision"] * 4
    history = [(e.action, e.subject, e.role, e.previous_role) for e in projects.audit(alice, "vision")]
    assert history == [("remove-member", "bob", "", "viewer"), ("set-role", "bob", "viewer", "editor"),
                       ("add-member", "bob", "editor", ""), ("add-member", "alice", "maintainer", ""),
                       ("create", "", "", "")]


def test_who_sees_what(world):
    projects, _, _ = world
    alice, bob, dave, root = (actor(projects, n) for n in ("alice", "bob", "dave", "root"))
    run(projects.create(alice, "vision"))
    run(projects.create(bob, "nlp"))
    run(projects.add_member(alice, "vision", "group", "ml-team", "viewer"))
    assert [(p.slug, role) for p, role in projects.visible(alice)] == [("vision", "maintainer")]
    assert [(p.slug, role) for p, role in projects.visible(dave)] == [("vision", "viewer")]  # through ml-team
    assert [(p.slug, role) for p, role in projects.visible(root)] == [("nlp", None), ("vision", None)]
    with pytest.raises(NotAllowed, match="not a member of nlp"):
        projects.show(alice, "nlp")
    with pytest.raises(NotFound):
        projects.show(alice, "nope")
    assert projects.show(root, "nlp")[1] is None


def test_only_maintainers_and_admins_manage(world):
    projects, _, _ = world
    alice, bob, carol, root = (actor(projects, n) for n in ("alice", "bob", "carol", "root"))
    run(projects.create(alice, "vision"))
    run(projects.add_member(alice, "vision", "user", "bob", "editor"))
    run(projects.add_member(alice, "vision", "user", "carol", "viewer"))
    for who, role in ((bob, "an editor"), (carol, "a viewer")):
        with pytest.raises(NotAllowed, match=f"; you are {role}$"):
            run(projects.add_member(who, "vision", "user", "dave", "viewer"))
        with pytest.raises(NotAllowed):
            run(projects.delete(who, "vision"))
    run(projects.add_member(root, "vision", "user", "dave", "viewer"))  # an admin who is not a member
    run(projects.set_role(alice, "vision", "user", "bob", "maintainer"))
    run(projects.add_member(actor(projects, "bob"), "vision", "user", "lead", "viewer"))  # bob now maintains


def test_membership_validation(world):
    projects, _, _ = world
    alice = actor(projects, "alice")
    run(projects.create(alice, "vision"))
    with pytest.raises(Invalid, match="no hub user named 'zed'"):
        run(projects.add_member(alice, "vision", "user", "zed", "viewer"))
    with pytest.raises(Invalid, match="no hub group named 'ghosts'"):
        run(projects.add_member(alice, "vision", "group", "ghosts", "viewer"))
    with pytest.raises(Invalid, match="project group"):
        run(projects.add_member(alice, "vision", "group", "project:vision:viewer", "viewer"))
    with pytest.raises(Invalid, match="not a role"):
        run(projects.add_member(alice, "vision", "user", "bob", "owner"))
    with pytest.raises(Conflict, match="already a member"):
        run(projects.add_member(alice, "vision", "user", "alice", "viewer"))
    with pytest.raises(NotFound, match="not a member"):
        run(projects.remove_member(alice, "vision", "user", "bob"))
    with pytest.raises(Conflict, match="no maintainer left"):
        run(projects.remove_member(alice, "vision", "user", "alice"))
    with pytest.raises(Invalid, match="description"):
        run(projects.create(alice, "long", "x" * 2001))


def test_a_project_keeps_a_maintainer_but_a_group_counts():
    from gpulab.extensions.projects.store import Member, Project

    now = datetime.now(timezone.utc)
    project = Project("p", "", "a", now, now, (Member("user", "a", "maintainer", "a", now),
                                               Member("group", "g", "maintainer", "a", now)))
    keeps_a_maintainer(project, "user", "a", None)  # the group still maintains it
    keeps_a_maintainer(project, "group", "g", "editor")  # and user a still does
    alone = Project("p", "", "a", now, now, project.members[:1])
    keeps_a_maintainer(alone, "user", "a", "maintainer")
    for new_role in (None, "editor", "viewer"):
        with pytest.raises(Conflict):
            keeps_a_maintainer(alone, "user", "a", new_role)


def test_creators_restrict_who_may_create(world):
    projects, _, _ = world
    projects.creators = ["leads"]
    with pytest.raises(NotAllowed, match="only members of leads"):
        run(projects.create(actor(projects, "alice"), "vision"))
    run(projects.create(actor(projects, "lead"), "vision"))
    run(projects.create(actor(projects, "root"), "nlp"))


def test_names_that_exist_on_disk_or_in_the_database_are_refused(world):
    projects, _, sync = world
    alice = actor(projects, "alice")
    run(projects.create(alice, "vision"))
    with pytest.raises(Conflict, match="already exists"):
        run(projects.create(actor(projects, "bob"), "vision"))
    sync.taken.add("audio")
    with pytest.raises(Conflict, match="folder"):
        run(projects.create(alice, "audio"))
    assert projects.store.get("audio") is None


def test_sharing_reaches_every_member_and_ends_with_the_owner_or_an_admin(world):
    projects, directory, _ = world
    alice, bob, carol = (actor(projects, n) for n in ("alice", "bob", "carol"))
    run(projects.create(alice, "vision"))
    run(projects.add_member(alice, "vision", "user", "bob", "editor"))
    run(projects.add_member(alice, "vision", "group", "ml-team", "viewer"))
    shared = run(projects.share(bob, "token-of-bob", "vision", ""))
    assert [(s.owner, s.server, s.url, s.users) for s in shared] == [("bob", "", "/user/bob/", ("alice", "dave"))]
    assert directory.shares == {("bob", "", "alice"), ("bob", "", "dave")}
    with pytest.raises(NotFound, match="does not exist"):
        run(projects.share(bob, "token-of-bob", "vision", "gpu"))
    with pytest.raises(NotAllowed, match="not a member"):
        run(projects.share(carol, "token-of-carol", "vision", ""))
    with pytest.raises(NotAllowed, match="only bob"):
        run(projects.revoke(alice, "vision", "bob", ""))
    run(projects.revoke(actor(projects, "root"), "vision", "bob", ""))
    assert directory.shares == set() and projects.shared_servers(alice, "vision") == []
    with pytest.raises(NotFound, match="not shared"):
        run(projects.revoke(bob, "vision", "bob", ""))


def test_role_in_takes_the_highest_of_direct_and_group_roles(world):
    projects, _, _ = world
    alice = actor(projects, "alice")
    run(projects.create(alice, "vision"))
    run(projects.add_member(alice, "vision", "user", "dave", "viewer"))
    run(projects.add_member(alice, "vision", "group", "ml-team", "editor"))
    assert role_in(projects.store.get("vision"), actor(projects, "dave")) == "editor"
    assert projects.store.roles_of("dave", ["ml-team"]) == {"vision": "editor"}
    assert projects.store.roles_of("dave", []) == {"vision": "viewer"}
