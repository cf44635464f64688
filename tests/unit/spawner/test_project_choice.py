"""A server naming the project its hours count towards (spawner/project_choice.py, the form, the pod label)."""

from __future__ import annotations

import pytest

from gpulab.compute.profiles import ChoiceError
from gpulab.spawner.form import options_from_form, profile_cards, render_form
from gpulab.spawner.backends.kubernetes.manifests import PROJECT_LABEL, pod_changes
from gpulab.spawner.project_choice import projects_for_servers, resolve_project
from tests.support.gpu_profiles import CPU, profiles

GROUPS = ["ml-team", "project:vision:editor", "project:nlp:viewer", "project:audio:maintainer",
          "project:audio:viewer", "project:Bad_Slug:editor"]


def test_a_server_may_name_the_projects_its_user_can_edit():
    assert projects_for_servers(GROUPS) == ["audio", "vision"]
    assert resolve_project("vision", "ann", GROUPS) == "vision"
    assert resolve_project("", "ann", GROUPS) == resolve_project(None, "ann", GROUPS) == ""


@pytest.mark.parametrize("value, status, needle", [
    ("nlp", 403, "viewers of project 'nlp' cannot start servers for it"),
    ("speech", 403, "ann is not an editor of project 'speech'"),
    ("Bad_Slug", 400, "project must be a project's name"),
    (["vision"], 400, "not ['vision']"),
    (7, 400, "not 7"),
])
def test_a_project_the_user_cannot_edit_is_refused_with_the_reason(value, status, needle):
    with pytest.raises(ChoiceError) as refused:
        resolve_project(value, "ann", GROUPS)
    assert (refused.value.status, needle in refused.value.message) == (status, True), refused.value.message


def test_the_form_offers_a_project_only_to_someone_who_can_name_one():
    [cpu] = profiles(CPU)
    cards = profile_cards([cpu], {}, {}, {})
    assert 'name="project"' not in render_form(cards, projects=[])
    html = render_form(cards, projects=["audio", "vision"], previous_project="vision")
    assert '<option value="">None: the hours are yours</option>' in html
    assert '<option value="vision" selected>vision</option>' in html and '<option value="audio">audio</option>' in html
    # "None" sends an empty field, which is no option at all
    assert options_from_form({"profile": ["cpu"], "project": [""]}) == {"profile": "cpu"}
    assert options_from_form({"profile": ["cpu"], "project": ["vision"]}) == {"profile": "cpu", "project": "vision"}


def test_a_server_pod_is_labelled_with_its_project():
    [cpu] = profiles(CPU)
    assert PROJECT_LABEL not in pod_changes(cpu, "img", "cpu", None, None, []).labels
    assert pod_changes(cpu, "img", "cpu", None, None, [], "vision").labels[PROJECT_LABEL] == "vision"
