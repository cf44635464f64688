"""Project groups: names, parsing, and the highest role winning."""

from __future__ import annotations

import pytest

from gpulab.extensions.projects.membership import can, parse_project_group, project_group, project_roles


def test_project_groups_round_trip_and_the_highest_role_wins():
    assert project_group("vision", "editor") == "project:vision:editor"
    assert parse_project_group("project:vision:editor") == ("vision", "editor")
    assert parse_project_group("project:vision:owner") is None
    assert parse_project_group("ml-team") is None
    groups = ["project:vision:viewer", "project:vision:editor", "project:nlp:viewer", "ml-team"]
    assert project_roles(groups) == {"vision": "editor", "nlp": "viewer"}
    assert can(groups, "vision", "viewer") and can(groups, "vision", "editor")
    assert not can(groups, "vision", "maintainer") and not can(groups, "nlp", "editor")
    assert not can(groups, "audio", "viewer")
    with pytest.raises(ValueError):
        project_group("vision", "owner")
