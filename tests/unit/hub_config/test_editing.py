"""`gpulab config set|unset|add-item|remove-item`: the edits and the command's guarantees."""

from __future__ import annotations

import pytest

from gpulab.hub_config import cli
from gpulab.hub_config.editing import EditError, add_item, dump, parse_value, remove_item, set_value, unset_value
from gpulab.hub_config.settings import parse_yaml


def test_edits_keep_comments_and_order():
    doc = parse_yaml("# my hub\nhub:\n  port: 8000  # public\nauth:\n  type: local\n")
    set_value(doc, "hub.ip", "127.0.0.1")
    add_item(doc, "auth.admin_users", "alice")
    add_item(doc, "auth.admin_users", "alice")  # no duplicates
    text = dump(doc)
    assert text.startswith("# my hub\nhub:\n  port: 8000  # public\n  ip: 127.0.0.1\n")
    assert "admin_users:\n    - alice\n" in text and text.count("alice") == 1


def test_unset_and_remove_report_what_is_missing():
    doc = parse_yaml("auth:\n  admin_users: [alice]\n")
    remove_item(doc, "auth.admin_users", "alice")
    with pytest.raises(EditError, match="'bob' is not in auth.admin_users"):
        remove_item(doc, "auth.admin_users", "bob")
    with pytest.raises(EditError, match="auth.port is not set"):
        unset_value(doc, "auth.port")
    with pytest.raises(EditError, match="hub is not set"):
        unset_value(doc, "hub.port")
    with pytest.raises(EditError, match="is not a key path"):
        set_value(doc, "hub..port", 1)
    with pytest.raises(EditError, match="auth.admin_users is a list: name an item by its number"):
        set_value(doc, "auth.admin_users.x", 1)


@pytest.mark.parametrize("text, value", [("8000", 8000), ("true", True), ("[a, b]", ["a", "b"]),
                                         ("hello", "hello"), ("", ""), ("{a: 1}", {"a": 1})])
def test_values_are_read_as_yaml(text, value):
    assert parse_value(text) == value


def test_set_writes_only_a_valid_result(tmp_path, capsys):
    path = tmp_path / "gpulab.yaml"
    path.write_text("hub:\n  port: 8000 # keep me\n")
    path.chmod(0o640)
    assert cli.main(["config", "set", "hub.port", "abc", "--config", str(path)]) == 2
    assert "hub.port: got \"abc\"" in capsys.readouterr().err
    assert path.read_text() == "hub:\n  port: 8000 # keep me\n"
    assert cli.main(["config", "set", "hub.port", "9000", "--config", str(path)]) == 0
    assert path.read_text() == "hub:\n  port: 9000 # keep me\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert cli.main(["config", "unset", "hub.port", "--config", str(path)]) == 0
    assert cli.main(["config", "validate", "--config", str(path)]) == 0


def test_show_hides_secrets(tmp_path, capsys):
    path = tmp_path / "gpulab.yaml"
    path.write_text("auth:\n  oauth:\n    client_secret: hunter2\n")
    assert cli.main(["config", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "client_secret: (hidden)" in out


def test_set_refuses_to_edit_an_invalid_file(tmp_path, capsys):
    path = tmp_path / "gpulab.yaml"
    path.write_text("hub: [\n")
    assert cli.main(["config", "set", "hub.port", "1", "--config", str(path)]) == 2
    assert "not editing an invalid file" in capsys.readouterr().err
    assert path.read_text() == "hub: [\n"


HAND_WRITTEN = """# the team's hub
profiles:
  - {id: cpu, display_name: "CPU", default: true, cpu: {limit: 4}, memory: {limit: 16G}, idle_timeout: 86400}
  - id: gpu-1
    display_name: 'One GPU'
    gpu: {count: 1, models: [A100, H100]}
hub:
  port: 8000   # public
  ip: "0.0.0.0"
"""


def test_set_rewrites_no_other_line(tmp_path):
    """Issue 15 item 8: flow mappings were wrapped and quotes dropped on every edit."""
    path = tmp_path / "gpulab.yaml"
    path.write_text(HAND_WRITTEN)
    assert cli.main(["config", "set", "hub.port", "9000", "--config", str(path)]) == 0
    assert path.read_text() == HAND_WRITTEN.replace("port: 8000", "port: 9000")


def test_keys_inside_list_items(tmp_path, capsys):
    path = tmp_path / "gpulab.yaml"
    path.write_text(HAND_WRITTEN)
    assert cli.main(["config", "set", "profiles.1.idle_timeout", "3600", "--config", str(path)]) == 0
    assert path.read_text() == HAND_WRITTEN.replace(
        "    gpu: {count: 1, models: [A100, H100]}\n", "    gpu: {count: 1, models: [A100, H100]}\n    idle_timeout: 3600\n")
    assert cli.main(["config", "unset", "profiles.1.idle_timeout", "--config", str(path)]) == 0
    assert path.read_text() == HAND_WRITTEN
    assert cli.main(["config", "set", "profiles.5.idle_timeout", "1", "--config", str(path)]) == 2
    assert "profiles.5 is not set: profiles has 2 item(s)" in capsys.readouterr().err
    assert cli.main(["config", "set", "profiles.gpu.idle_timeout", "1", "--config", str(path)]) == 2
    assert "profiles is a list: name an item by its number" in capsys.readouterr().err


@pytest.mark.parametrize("text", [
    "auth:\n    admin_users:\n        - alice\nhub:\n    port: 8000\n",
    "auth:\n  admin_users:\n  - alice\nhub:\n  port: 8000\n",
])
def test_edits_keep_the_files_indentation(text):
    doc = parse_yaml(text)
    set_value(doc, "hub.port", 9000)
    assert dump(doc, like=text) == text.replace("8000", "9000")


def test_validate_without_a_file_checks_the_defaults(tmp_path, capsys):
    """`gpulab up` runs on the defaults without a gpulab.yaml; validate agrees instead of exiting 2."""
    assert cli.main(["config", "validate", "--config", str(tmp_path / "gpulab.yaml")]) == 0
    assert "runs on the defaults, which are valid" in capsys.readouterr().out
