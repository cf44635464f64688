"""Settings: parsing, validation messages, defaults, paths, and the schema's own rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulab.hub_config.settings import (ConfigError, bundled_schema, complete, deep_merge, load_settings, parse_yaml,
                                        plain, validate)


def problems_of(text: str) -> list[str]:
    try:
        doc = parse_yaml(text)
    except ConfigError as exc:
        return [p.render("gpulab.yaml") for p in exc.problems]
    return [p.render("gpulab.yaml") for p in validate(plain(doc), doc=doc)]


def walk_objects(schema: dict, path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from walk_objects(sub, f"{path}.{key}" if path else key)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_objects(schema["additionalProperties"], f"{path}.*")


def test_every_key_has_a_description_and_objects_reject_unknown_keys():
    for path, node in walk_objects(bundled_schema()):
        assert node.get("description"), f"{path or '(root)'} has no description"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_every_leaf_has_a_default():
    for path, node in walk_objects(bundled_schema()):
        if node.get("type") != "object" and path and ".*" not in path:
            assert "default" in node, f"{path} has no default"


def test_an_empty_file_means_all_defaults(tmp_path):
    settings = load_settings(None)
    assert settings.values["hub"]["port"] == 8000
    assert settings.values["auth"]["type"] == "local"
    assert settings.values["spawner"]["local"]["account_prefix"] == "gpulab-"
    assert settings.values["proxy"]["kind"] == "traefik"


@pytest.mark.parametrize("text, expected", [
    ("hub:\n  port: eighty\n",
     'gpulab.yaml:2: hub.port: got "eighty" (a string), expected an integer from 1 to 65535'),
    ("hub:\n  typo: 1\n", "gpulab.yaml:2: hub.typo: unknown key (expected one of: ip, port,"),
    ("hub:\n  port: 80\n   ip: x\n", "gpulab.yaml:3: hub.port: invalid YAML: mapping values are not allowed here"),
    ("hub:\n  port: 80\n  port: 81\n", 'gpulab.yaml:3: hub.port: invalid YAML: duplicate key "port"'),
    ("proxy:\n  kind: nginx\n", 'gpulab.yaml:2: proxy.kind: got "nginx", expected one of: traefik, configurable-http-proxy'),
    ("hub:\n  base_url: gpulab\n", 'gpulab.yaml:2: hub.base_url: got "gpulab", expected a string matching'),
    ("spawner:\n  environment:\n    bad-name: x\n", "gpulab.yaml:3: spawner.environment.bad-name: not an allowed key name"),
    ("spawner:\n  environment:\n    GOOD: 1\n", "gpulab.yaml:3: spawner.environment.GOOD: got 1 (an integer), expected a string"),
    ("- just\n- a list\n", "gpulab.yaml:1: (top level): expected a mapping of settings, got a list"),
    ("auth:\n  type: github\n", "gpulab.yaml:1: auth.oauth: missing (required)"),
])
def test_problems_name_line_key_value_and_expectation(text, expected):
    assert any(p.startswith(expected) for p in problems_of(text)), problems_of(text)


def test_oidc_needs_its_endpoints_and_a_client_id():
    found = problems_of("auth:\n  type: oidc\n  oauth:\n    oidc: {token_url: ftp://x}\n")
    assert any("auth.oauth.client_id: missing (required)" in p for p in found)
    assert any("auth.oauth.oidc.authorize_url: missing (required)" in p for p in found)
    assert any('auth.oauth.oidc.token_url: got "ftp://x", expected a string matching ^https?://' in p for p in found)


def test_secrets_never_appear_in_messages():
    found = problems_of("auth:\n  oauth:\n    client_secret: 12345\n")
    assert found and all("12345" not in p for p in found)
    assert any("auth.oauth.client_secret: got (hidden)" in p for p in found)


def test_every_problem_is_reported_at_once():
    assert len(problems_of("hub:\n  port: x\n  ip: 5\nproxy:\n  kind: y\n")) == 3


def test_relative_paths_resolve_against_the_settings_folder(tmp_path):
    (tmp_path / "gpulab.yaml").write_text("hub:\n  data_dir: state\nspawner:\n  local:\n    home_root: ../homes\n")
    values = load_settings(tmp_path / "gpulab.yaml").values
    assert values["hub"]["data_dir"] == str(tmp_path / "state")
    assert values["spawner"]["local"]["home_root"] == str(tmp_path.parent / "homes")
    assert values["spawner"]["local"]["python"] == ""  # empty means "the default", not a path


def test_overrides_are_validated_like_the_file(tmp_path):
    (tmp_path / "gpulab.yaml").write_text("hub:\n  port: 9000\n")
    assert load_settings(tmp_path / "gpulab.yaml", {"hub": {"ip": "127.0.0.1"}}).values["hub"]["port"] == 9000
    with pytest.raises(ConfigError, match="hub.port: got 0"):
        load_settings(tmp_path / "gpulab.yaml", {"hub": {"port": 0}})


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "nope.yaml")


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}, "d": 3}) == {"a": {"b": 1, "c": [2]}, "d": 3}


def test_complete_fills_nested_defaults_without_touching_given_values():
    values = complete({"hub": {"tls": {"cert_file": "/x.crt"}}}, Path("/"))
    assert values["hub"]["tls"] == {"cert_file": "/x.crt", "key_file": ""}
    assert values["auth"]["local"]["minimum_password_length"] == 10
