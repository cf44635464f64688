"""`gpulab migrate z2jh`: the converter on literal z2jh values (what each key becomes, what is
listed as not carried) and the command's exit codes. tests/helm/test_migrate_z2jh.py renders
the chart with converted values."""

from __future__ import annotations

import yaml

from gpulab.hub_config.cli import main
from gpulab.hub_config.migrate_z2jh import convert_z2jh, kubespawner_size


def test_kubespawner_sizes_become_gpulab_sizes_of_the_same_bytes():
    assert kubespawner_size("1G") == "1Gi" and kubespawner_size("512M") == "512Mi"
    assert kubespawner_size("1.5T") == "1.5Ti" and kubespawner_size(1073741824) == "1073741824"
    assert kubespawner_size("1Gi") is None  # KubeSpawner itself refuses it


def test_auth_github_with_admins_allowed_users_and_secret_listed():
    out, notes = convert_z2jh({"hub": {"config": {
        "JupyterHub": {"authenticator_class": "github"},
        "Authenticator": {"admin_users": ["alice"], "allowed_users": ["bob"]},
        "GitHubOAuthenticator": {"client_id": "abc", "client_secret": "s3cret", "admin_users": ["alice", "carol"],
                                 "oauth_callback_url": "https://hub.example.com/hub/oauth_callback",
                                 "allowed_organizations": ["my-org"], "scope": ["read:org"]},
    }}})
    assert out["gpulab"]["auth"] == {
        "type": "github", "admin_users": ["alice", "carol"], "allowed_users": ["bob"],
        "oauth": {"client_id": "abc", "callback_url": "https://hub.example.com/hub/oauth_callback",
                  "github": {"organizations": ["my-org"]}, "scopes": ["read:org"]}}
    assert notes == ["hub.config.GitHubOAuthenticator.client_secret: a secret: put it in a Kubernetes Secret "
                     "and name it in secrets.oauthClientSecret"]
    assert "s3cret" not in yaml.safe_dump(out)


def test_generic_oauth_becomes_oidc_and_native_becomes_local():
    out, _ = convert_z2jh({"hub": {"config": {
        "JupyterHub": {"authenticator_class": "generic-oauth"},
        "GenericOAuthenticator": {"client_id": "hub", "authorize_url": "https://sso/auth", "token_url": "https://sso/token",
                                  "userdata_url": "https://sso/userinfo", "username_claim": "email",
                                  "claim_groups_key": "roles", "allowed_groups": ["ml"], "admin_groups": ["ops"]}}}})
    assert out["gpulab"]["auth"] == {"type": "oidc", "oauth": {
        "client_id": "hub", "allowed_groups": ["ml"], "admin_groups": ["ops"],
        "oidc": {"authorize_url": "https://sso/auth", "token_url": "https://sso/token",
                 "userdata_url": "https://sso/userinfo", "username_claim": "email", "groups_claim": "roles"}}}
    out, notes = convert_z2jh({"hub": {"config": {
        "JupyterHub": {"authenticator_class": "nativeauthenticator.NativeAuthenticator"},
        "NativeAuthenticator": {"open_signup": True, "ask_email_on_signup": True}}}})
    assert out["gpulab"]["auth"] == {"type": "local", "local": {"open_signup": True}}
    assert notes == ["hub.config.NativeAuthenticator.ask_email_on_signup: no gpulab setting for it; "
                     "set it in hub.extraConfig (c.Section.name = ...) if you still need it"]


def test_an_authenticator_gpulab_lacks_is_listed_and_auth_stays_local():
    out, notes = convert_z2jh({"hub": {"config": {"JupyterHub": {"authenticator_class": "ldapauthenticator.LDAPAuthenticator"},
                                                  "LDAPAuthenticator": {"server_address": "ldap.example.com"}}}})
    assert "auth" not in out["gpulab"]
    assert notes[0].startswith("hub.config.JupyterHub.authenticator_class: gpulab signs in with local accounts")
    assert notes[1].startswith("hub.config.LDAPAuthenticator.server_address: no gpulab setting")


def test_singleuser_settings_go_under_every_profile_and_the_profiles_own_overrides_win():
    out, notes = convert_z2jh({"singleuser": {
        "image": {"name": "jupyter/scipy-notebook", "tag": "2024-07-29", "pullPolicy": "Always"},
        "cpu": {"limit": 2, "guarantee": 0.5},
        "memory": {"limit": "4G", "guarantee": "1G"},
        "nodeSelector": {"pool": "user"},
        "extraTolerations": [{"key": "dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}],
        "extraResource": {"limits": {"ephemeral-storage": "20Gi"}},
        "extraEnv": {"EDITOR": "vim", "SECRET": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}},
        "profileList": [
            {"display_name": "Small", "default": True},
            {"display_name": "GPU", "slug": "gpu", "description": "one T4",
             "kubespawner_override": {"image": "jupyter/pytorch:cuda12", "mem_limit": "16G",
                                      "extra_resource_limits": {"nvidia.com/gpu": "1"}, "node_selector": {"gpu": "t4"}}},
        ],
    }})
    small, gpu = out["gpulab"]["profiles"]
    assert small == {
        "id": "small", "display_name": "Small", "default": True,
        "cpu": {"limit": 2, "guarantee": 0.5}, "memory": {"limit": "4Gi", "guarantee": "1Gi"},
        "node_selector": {"pool": "user"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}],
        "kubespawner_override": {"image": "jupyter/scipy-notebook:2024-07-29",
                                 "extra_resource_limits": {"ephemeral-storage": "20Gi"}},
    }
    # the profile's mem_limit and node_selector replace the hub-wide ones, as in KubeSpawner
    assert gpu["id"] == "gpu" and "slug" not in gpu and gpu["memory"] == {"guarantee": "1Gi"}
    assert "node_selector" not in gpu
    assert gpu["kubespawner_override"] == {
        "image": "jupyter/pytorch:cuda12", "mem_limit": "16G", "node_selector": {"gpu": "t4"},
        "extra_resource_limits": {"ephemeral-storage": "20Gi", "nvidia.com/gpu": "1"}}
    assert out["gpulab"]["spawner"] == {"environment": {"EDITOR": "vim"},
                                        "kubernetes": {"image_pull_policy": "Always"}}
    assert notes == ["singleuser.extraEnv.SECRET: gpulab's spawner.environment takes plain strings (no valueFrom)"]


def test_profile_options_are_kept_and_settings_gpulab_builds_are_taken_out():
    option = {"display_name": "Image", "choices": {
        "scipy": {"display_name": "SciPy", "default": True, "kubespawner_override": {"image": "jupyter/scipy-notebook:2024"}},
        "r": {"display_name": "R", "kubespawner_override": {"image": "jupyter/r-notebook:2024", "profile_list": []}}},
        "unlisted_choice": {"enabled": True, "display_name": "Other image", "validation_regex": "^jupyter/.+:.+$",
                            "validation_message": "a jupyter/ image with a tag", "kubespawner_override": {"image": "{value}"}}}
    out, notes = convert_z2jh({"singleuser": {"profileList": [
        {"display_name": "Data Science (4 GB)", "profile_options": {"image": option}, "allowed_teams": ["x"]}]}})
    (profile,) = out["gpulab"]["profiles"]
    assert profile["id"] == "data-science-4-gb"
    choices = profile["profile_options"]["image"]["choices"]
    assert choices["r"]["kubespawner_override"] == {"image": "jupyter/r-notebook:2024"}
    assert profile["profile_options"]["image"]["unlisted_choice"]["kubespawner_override"] == {"image": "{value}"}
    assert notes == [
        "singleuser.profileList[0].allowed_teams: not a profile key z2jh documents",
        "singleuser.profileList[0].profile_options.image.choices.r.kubespawner_override.profile_list: "
        "gpulab builds it from `profiles`"]
    # z2jh pulls the listed images even when the values say nothing of prePuller
    assert out["prePuller"] == {"profiles": {"data-science-4-gb": {
        "images": ["jupyter/scipy-notebook:2024", "jupyter/r-notebook:2024"]}}}


def test_storage_dynamic_static_none_and_extra_volumes():
    out, notes = convert_z2jh({"singleuser": {"storage": {
        "type": "dynamic", "capacity": "20Gi", "homeMountPath": "/home/jovyan",
        "dynamic": {"storageClass": "fast", "pvcNameTemplate": "claim-{username}{servername}",
                    "volumeNameTemplate": "volume-{username}{servername}", "storageAccessModes": ["ReadWriteOnce"]},
        "extraVolumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}],
        "extraVolumeMounts": [{"name": "shared", "mountPath": "/home/shared", "readOnly": True}]}}})
    assert out["gpulab"]["spawner"]["kubernetes"]["home_storage"] == {"capacity": "20Gi", "storage_class": "fast"}
    (profile,) = out["gpulab"]["profiles"]
    assert profile["kubespawner_override"] == {
        "pvc_name_template": "claim-{username}{servername}",  # the users' existing claims
        "volumes": {"shared-0": {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}},
        "volume_mounts": {"shared-0": {"name": "shared", "mountPath": "/home/shared", "readOnly": True}}}
    assert notes == ["singleuser.storage.dynamic.volumeNameTemplate: gpulab names the pod's home volume `home`; "
                     "the claim's name (pvcNameTemplate) is what keeps the data"]

    out, notes = convert_z2jh({"singleuser": {"storage": {"type": "none"}}})
    assert out["gpulab"]["spawner"]["kubernetes"]["home_storage"] == {"capacity": ""} and notes == []

    out, notes = convert_z2jh({"singleuser": {"storage": {"type": "static", "homeMountPath": "/home/me",
                                                          "static": {"pvcName": "homes", "subPath": "{username}"}}}})
    assert out["gpulab"]["profiles"][0]["kubespawner_override"] == {
        "volumes": {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "homes"}}},
        "volume_mounts": {"home": {"name": "home", "mountPath": "/home/me", "subPath": "{username}"}}}
    assert notes == []


def test_culling_prepuller_and_scheduling():
    out, notes = convert_z2jh({
        "singleuser": {"profileList": [{"display_name": "CPU", "kubespawner_override": {"image": "a/b:1"}}]},
        "cull": {"enabled": True, "timeout": 1800, "every": 300, "users": False, "maxAge": 86400},
        "prePuller": {"hook": {"enabled": True}, "continuous": {"enabled": True},
                      "extraImages": {"extra": {"name": "busybox", "tag": "1.36"}}},
        "scheduling": {"userScheduler": {"enabled": True}, "podPriority": {"enabled": False},
                       "userPods": {"nodeAffinity": {"matchNodePurpose": "require"},
                                    "tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal",
                                                     "value": "user", "effect": "NoSchedule"}]}},
    })
    (profile,) = out["gpulab"]["profiles"]
    assert profile["idle_timeout"] == 1800 and out["gpulab"]["culling"] == {"check_interval": 300}
    assert profile["kubespawner_override"]["node_affinity_required"] == [
        {"matchExpressions": [{"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}]
    assert profile["tolerations"][0]["key"] == "hub.jupyter.org/dedicated"
    assert out["prePuller"] == {"profiles": {"cpu": {"images": ["a/b:1", "busybox:1.36"]}}}
    assert [note.split(":")[0] for note in notes] == ["cull.maxAge", "prePuller.hook", "scheduling.userScheduler"]

    out, _ = convert_z2jh({"cull": {"enabled": False, "timeout": 60}, "prePuller": {"continuous": {"enabled": False}}})
    assert out["gpulab"]["culling"] == {"enabled": False} and out["prePuller"] == {"enabled": False}
    assert "idle_timeout" not in out["gpulab"]["profiles"][0]


def test_unknown_keys_are_listed_never_dropped_and_switched_off_features_are_passed_over():
    out, notes = convert_z2jh({"hub": {"extraConfig": {"10-x": "c.JupyterHub.shutdown_on_logout = True"},
                                       "concurrentSpawnLimit": 10},
                               "ingress": {"enabled": True, "hosts": ["hub.example.com"]},
                               "debug": {"enabled": False}, "mystery": {"a": 1, "b": [2]},
                               "singleuser": {"networkPolicy": {"enabled": False}, "extraFiles": {"f": {"mountPath": "/x"}}}})
    assert out["hub"] == {"extraConfig": {"10-x": "c.JupyterHub.shutdown_on_logout = True"}}
    assert [note.split(": ")[0] for note in notes] == [
        "hub.concurrentSpawnLimit", "ingress", "mystery.a", "mystery.b",
        "singleuser.networkPolicy.enabled", "singleuser.extraFiles.f.mountPath"]
    assert notes[2] == "mystery.a: not a z2jh key gpulab knows"


def test_the_command_writes_the_file_and_lists_what_it_did_not_carry(tmp_path, capsys):
    source = tmp_path / "config.yaml"
    source.write_text("singleuser:\n  memory: {limit: 2G}\ningress: {enabled: true}\n")
    target = tmp_path / "gpulab-values.yaml"
    assert main(["migrate", "z2jh", str(source), "-o", str(target)]) == 0
    written = yaml.safe_load(target.read_text())
    assert written["gpulab"]["profiles"][0]["memory"] == {"limit": "2Gi"}
    err = capsys.readouterr().err
    assert "not carried: ingress: the chart has no Ingress" in err and f"wrote {target}; keys not carried: 1" in err


def test_the_command_refuses_unreadable_and_non_mapping_input_with_status_2(tmp_path, capsys):
    assert main(["migrate", "z2jh", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("hub: [\n")
    assert main(["migrate", "z2jh", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- a\n")
    assert main(["migrate", "z2jh", str(tmp_path / "list.yaml")]) == 2
    assert "expected a mapping of z2jh values, got list" in capsys.readouterr().err
