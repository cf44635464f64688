"""A zero-to-jupyterhub (z2jh) values file as a gpulab chart values file (pure, no I/O).

`convert_z2jh(values)` returns (gpulab chart values, not carried), where each "not carried"
line is "KEY: why". Every key of the input is either carried, or covered by a line, so
nothing is dropped without a word; empty values and features switched off (`enabled: false`)
carry nothing and are passed over.

What z2jh sets hub-wide on KubeSpawner (singleuser.*) becomes part of every profile, with the
profile's own kubespawner_override applied after it, as KubeSpawner does. Quantities keep their
meaning: z2jh's memory "1G" is 1 GiB (KubeSpawner), which gpulab's profiles write "1Gi".
"""

from __future__ import annotations

import copy
import re

from gpulab.spawner.checks import ID, NOT_OVERRIDABLE

Path = tuple[str, ...]

AUTHENTICATORS = {  # z2jh's authenticator_class (short name or class) -> (auth.type, config section)
    "github": ("github", "GitHubOAuthenticator"),
    "oauthenticator.github.GitHubOAuthenticator": ("github", "GitHubOAuthenticator"),
    "oauthenticator.GitHubOAuthenticator": ("github", "GitHubOAuthenticator"),
    "gitlab": ("gitlab", "GitLabOAuthenticator"),
    "oauthenticator.gitlab.GitLabOAuthenticator": ("gitlab", "GitLabOAuthenticator"),
    "google": ("google", "GoogleOAuthenticator"),
    "oauthenticator.google.GoogleOAuthenticator": ("google", "GoogleOAuthenticator"),
    "generic-oauth": ("oidc", "GenericOAuthenticator"),
    "oauthenticator.generic.GenericOAuthenticator": ("oidc", "GenericOAuthenticator"),
    "native": ("local", "NativeAuthenticator"),
    "nativeauthenticator.NativeAuthenticator": ("local", "NativeAuthenticator"),
}
# Authenticator settings with a gpulab key, read from Authenticator, OAuthenticator or the class's section.
AUTH_KEYS = {"admin_users": ("auth", "admin_users"), "allowed_users": ("auth", "allowed_users")}
OAUTH_KEYS = {
    "client_id": ("client_id",), "oauth_callback_url": ("callback_url",), "scope": ("scopes",),
    "allowed_groups": ("allowed_groups",), "admin_groups": ("admin_groups",), "allow_all": ("allow_all",),
    "manage_groups": ("manage_groups",),
    "allowed_organizations": ("github", "organizations"),
    "gitlab_url": ("gitlab", "url"), "allowed_gitlab_groups": ("gitlab", "groups"),
    "hosted_domain": ("google", "hosted_domains"),
    "authorize_url": ("oidc", "authorize_url"), "token_url": ("oidc", "token_url"),
    "userdata_url": ("oidc", "userdata_url"), "username_claim": ("oidc", "username_claim"),
    "username_key": ("oidc", "username_claim"), "claim_groups_key": ("oidc", "groups_claim"),
    "login_service": ("oidc", "login_service"),
}
NATIVE_KEYS = ("enable_signup", "open_signup", "minimum_password_length", "allowed_failed_logins",
               "seconds_before_next_try")

# singleuser.* keys that are KubeSpawner settings, carried as every profile's kubespawner_override.
SINGLEUSER_OVERRIDES = {
    "extraLabels": "extra_labels", "extraAnnotations": "extra_annotations", "lifecycleHooks": "lifecycle_hooks",
    "initContainers": "init_containers", "extraContainers": "extra_containers",
    "extraPodConfig": "extra_pod_config", "allowPrivilegeEscalation": "allow_privilege_escalation",
    "containerSecurityContext": "container_security_context", "podSecurityContext": "pod_security_context",
}
AFFINITIES = {"extraNodeAffinity": "node_affinity", "extraPodAffinity": "pod_affinity",
              "extraPodAntiAffinity": "pod_anti_affinity"}
NODE_PURPOSE = {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}
PROFILE_KEYS = ("display_name", "slug", "description", "default", "kubespawner_override", "profile_options")
CHOICE_KEYS = ("display_name", "default", "kubespawner_override")
UNLISTED_KEYS = ("enabled", "display_name", "display_name_in_choices", "validation_regex",
                 "validation_message", "kubespawner_override")

# Why a key is not carried, by key path prefix (the longest prefix that matches wins).
WHY = {
    "hub.config": "no gpulab setting for it; set it in hub.extraConfig (c.Section.name = ...) if you still need it",
    "hub.config.JupyterHub.authenticator_class": "gpulab signs in with local accounts (NativeAuthenticator), "
                                                 "GitHub, GitLab, Google or OpenID Connect; auth stays local",
    "hub.db": "gpulab keeps the hub's database in PostgreSQL (postgresql.*, or externalDatabase); z2jh's "
              "database is not moved: users sign in again and start their servers again",
    "hub.cookieSecret": "a secret: the chart generates one (or give secrets.existingSecret)",
    "hub.existingSecret": "give your Secret in secrets.existingSecret (its keys differ from z2jh's)",
    "hub.image": "the hub runs gpulab's image (hub.image)",
    "hub.extraEnv": "the chart sets the hub's environment itself; give settings through gpulab.* instead",
    "hub.services": "gpulab's own services are built in; other services go in hub.extraConfig",
    "hub.loadRoles": "gpulab defines its roles; add more in hub.extraConfig (c.JupyterHub.load_roles)",
    "hub.networkPolicy": "the chart's NetworkPolicies are networkPolicy.*",
    "hub.concurrentSpawnLimit": "no gpulab setting; set c.JupyterHub.concurrent_spawn_limit in hub.extraConfig",
    "hub.activeServerLimit": "no gpulab setting; set c.JupyterHub.active_server_limit in hub.extraConfig",
    "hub.consecutiveFailureLimit": "no gpulab setting; set c.Spawner.consecutive_failure_limit in hub.extraConfig",
    "hub": "no equivalent in gpulab's chart",
    "proxy.https": "the chart does not terminate TLS: use a load balancer (proxy.service.annotations) or an "
                   "Ingress in front of <release>-proxy-public",
    "proxy.secretToken": "a secret: the chart generates the proxy token (or give secrets.existingSecret)",
    "proxy.traefik": "the chart's proxy is configurable-http-proxy",
    "proxy": "no equivalent in gpulab's chart's proxy",
    "singleuser.image.name": "has no tag: give singleuser.image.tag",
    "singleuser.image.tag": "has no name: give singleuser.image.name",
    "singleuser.imagePullSecret": "the chart creates no pull secret; create it yourself and list it in "
                                  "singleuser.image.pullSecrets",
    "singleuser.extraEnv": "gpulab's spawner.environment takes plain strings (no valueFrom)",
    "singleuser.networkPolicy.enabled": "the chart's NetworkPolicies stay on (networkPolicy.enabled false turns them "
                                        "all off)",
    "hub.networkPolicy.enabled": "the chart's NetworkPolicies stay on (networkPolicy.enabled false turns them all off)",
    "proxy.chp.networkPolicy.enabled": "the chart's NetworkPolicies stay on (networkPolicy.enabled false turns them "
                                       "all off)",
    "singleuser.cpu": "not a number of cores",
    "singleuser.networkPolicy": "the chart's NetworkPolicies are networkPolicy.* (user servers: networkPolicy.singleuser)",
    "singleuser.cloudMetadata": "the chart's NetworkPolicy for user servers closes private ranges; "
                                "cloud metadata is reached only with networkPolicy.singleuser.extraEgress",
    "singleuser.networkTools": "no init container is used to block cloud metadata (NetworkPolicies do)",
    "singleuser.storage.type": "only dynamic, static and none exist in z2jh",
    "singleuser.storage.static": "static storage needs pvcName",
    "singleuser.storage.homeMountPath": "gpulab mounts homes at /home/jovyan",
    "singleuser.storage.dynamic.volumeNameTemplate": "gpulab names the pod's home volume `home`; "
                                                     "the claim's name (pvcNameTemplate) is what keeps the data",
    "singleuser.storage.dynamic.storageAccessModes": "gpulab's home claims are ReadWriteOnce",
    "singleuser.memory": "not a size gpulab reads (a number of bytes, or one with K, M, G, T)",
    "singleuser.profileList": "not a profile key z2jh documents",
    "singleuser": "no gpulab equivalent",
    "cull.users": "gpulab stops idle servers but never deletes users",
    "cull.adminUsers": "gpulab culls admins' servers like everyone's",
    "cull.removeNamedServers": "gpulab stops idle named servers and keeps them",
    "cull.maxAge": "gpulab culls by inactivity only, not by age",
    "cull.concurrency": "gpulab's culler has no concurrency setting",
    "cull": "no equivalent in gpulab's culling",
    "prePuller.hook": "gpulab has no pre-upgrade pull; the continuous pre-pullers (one per profile) pull ahead",
    "prePuller.pullProfileListImages": "gpulab pulls each profile's images on that profile's nodes",
    "prePuller": "no equivalent in gpulab's pre-puller",
    "scheduling.userScheduler": "gpulab uses Kubernetes' default scheduler (no packing scheduler of its own)",
    "scheduling.podPriority": "the chart creates no priority classes; give profiles "
                              "kubespawner_override.priority_class_name for a class you create",
    "scheduling.userPlaceholder": "the chart runs no placeholder pods",
    "scheduling.corePods": "the hub's and proxy's placement are hub.nodeSelector/tolerations/affinity and "
                           "proxy.nodeSelector/tolerations",
    "scheduling.userPods.nodeAffinity.matchNodePurpose": "only prefer, require and ignore exist in z2jh",
    "scheduling": "no equivalent in gpulab's chart",
    "ingress": "the chart has no Ingress: put one in front of the Service <release>-proxy-public",
    "rbac": "the chart's RBAC is rbac.create, with the least the hub needs",
    "imagePullSecret": "the chart creates no pull secret; list yours in singleuser.image.pullSecrets",
    "imagePullSecrets": "the chart creates no pull secret; list yours in singleuser.image.pullSecrets",
    "global": "no equivalent in gpulab's chart",
    "custom": "z2jh's free-form values for extraConfig; gpulab's chart has none (put the values in the code)",
    "debug": "no equivalent in gpulab's chart",
}
UNKNOWN = "not a z2jh key gpulab knows"


class Source:
    """The input, with what was carried marked, so what is left can be listed."""

    def __init__(self, values: dict):
        self.values = values
        self.taken: set[Path] = set()

    def get(self, *path: str, default=None):
        node = self.values
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def take(self, *path: str, default=None):
        """The value at path (default when absent or null), marked as carried."""
        self.taken.add(path)
        value = self.get(*path)
        return default if value is None else value

    def left(self) -> list[Path]:
        """Leaf key paths not carried, less empty values and switched-off features."""
        found: list[Path] = []

        def walk(node, path: Path):
            if any(path[:i] in self.taken for i in range(1, len(path) + 1)):
                return
            if isinstance(node, dict):
                if node.get("enabled") is False and path not in OFF_MATTERS and path + ("enabled",) not in self.taken:
                    return  # a feature switched off carries nothing
                for key, value in node.items():
                    walk(value, path + (str(key),))
            elif node not in (None, "", [], {}):
                found.append(path)

        walk(self.values, ())
        return found


# Sections whose lines name each key; under any other prefix of WHY one line covers the subtree.
BY_KEY = {"hub", "hub.config", "proxy", "singleuser", "cull", "prePuller", "scheduling"}
# Switched off in z2jh, but on in gpulab's chart: worth a line.
OFF_MATTERS = {("singleuser", "networkPolicy"), ("hub", "networkPolicy"), ("proxy", "chp", "networkPolicy")}


def _why(path: Path) -> tuple[str, str]:
    """(the key the line names, why) for a key not carried."""
    dotted = ".".join(path)
    for prefix in sorted(WHY, key=len, reverse=True):
        if dotted == prefix or dotted.startswith(prefix + "."):
            return (dotted if prefix in BY_KEY else prefix), WHY[prefix]
    return dotted, UNKNOWN


def _merge_override(base: dict, own: dict) -> dict:
    """Two kubespawner_override layers as KubeSpawner applies them one after the other."""
    merged = copy.deepcopy(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_override(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def kubespawner_size(value) -> str | None:
    """A KubeSpawner byte size (K, M, G, T are powers of 1024) as a gpulab size, e.g. "1G" -> "1Gi"."""
    text = str(value).strip()
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT]?)", text)
    if not match:  # KubeSpawner itself refuses "1Gi"
        return None
    number, unit = match.groups()
    return f"{number}{unit}i" if unit else number


def _set(target: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _auth(src: Source, out: dict, notes: list[str]) -> None:
    config = src.get("hub", "config", default={}) or {}
    if not isinstance(config, dict):
        return
    auth: dict = {}
    section = None
    chosen = config.get("JupyterHub", {}).get("authenticator_class") if isinstance(config.get("JupyterHub"), dict) else None
    if chosen is not None and str(chosen) in AUTHENTICATORS:
        src.take("hub", "config", "JupyterHub", "authenticator_class")
        auth["type"], section = AUTHENTICATORS[str(chosen)]
    sections = ["Authenticator"] + (["OAuthenticator"] if auth.get("type") not in (None, "local") else [])
    sections += [section] if section else []
    oauth: dict = {}
    for name in sections:
        settings = config.get(name)
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            if key in AUTH_KEYS:
                src.take("hub", "config", name, key)
                listed = auth.setdefault(AUTH_KEYS[key][1], [])
                listed += [str(v) for v in value if str(v) not in listed]
            elif key == "client_secret":
                src.take("hub", "config", name, key)
                notes.append(f"hub.config.{name}.client_secret: a secret: put it in a Kubernetes Secret and "
                             "name it in secrets.oauthClientSecret")
            elif name == "NativeAuthenticator" and key in NATIVE_KEYS:
                src.take("hub", "config", name, key)
                _set(auth, ("local", key), value)
            elif name != "Authenticator" or key in ("allow_all", "manage_groups"):
                if key in OAUTH_KEYS and auth.get("type") not in (None, "local"):
                    src.take("hub", "config", name, key)
                    if key == "hosted_domain" and isinstance(value, str):
                        value = [value]
                    if key == "scope":
                        value = list(value)
                    _set(oauth, OAUTH_KEYS[key], value)
    if oauth:
        auth["oauth"] = oauth
    if auth:
        out["gpulab"]["auth"] = auth


def _base_override(src: Source, out: dict) -> dict:
    """What singleuser.* and scheduling.userPods set on KubeSpawner, as a kubespawner_override."""
    base: dict = {}
    image = src.get("singleuser", "image", default={}) or {}
    if isinstance(image, dict) and image.get("name") and image.get("tag"):
        src.take("singleuser", "image", "name")
        src.take("singleuser", "image", "tag")
        base["image"] = f"{image['name']}:{image['tag']}"
    elif isinstance(image, dict) and image.get("name") and image.get("tag") is None and "tag" not in image:
        src.take("singleuser", "image", "name")
        base["image"] = str(image["name"])
    if src.get("singleuser", "image", "pullSecrets"):
        base["image_pull_secrets"] = src.take("singleuser", "image", "pullSecrets")
    for key, setting in SINGLEUSER_OVERRIDES.items():
        if src.get("singleuser", key) not in (None, {}, []):
            base[setting] = copy.deepcopy(src.take("singleuser", key))
    command = src.get("singleuser", "cmd")
    if command is not None:
        src.take("singleuser", "cmd")
        if command not in ("jupyterhub-singleuser", ["jupyterhub-singleuser"]):
            base["cmd"] = command
    for kind, limit in (("limits", "extra_resource_limits"), ("guarantees", "extra_resource_guarantees")):
        if src.get("singleuser", "extraResource", kind):
            base[limit] = copy.deepcopy(src.take("singleuser", "extraResource", kind))
    for key, setting in AFFINITIES.items():
        for strength in ("required", "preferred"):
            terms = src.get("singleuser", key, strength)
            if terms:
                base[f"{setting}_{strength}"] = copy.deepcopy(src.take("singleuser", key, strength))
    purpose = src.get("scheduling", "userPods", "nodeAffinity", "matchNodePurpose")
    if purpose in ("prefer", "require", "ignore"):
        src.take("scheduling", "userPods", "nodeAffinity", "matchNodePurpose")
        if purpose == "prefer":
            term = {"weight": 100, "preference": {"matchExpressions": [NODE_PURPOSE]}}
            base["node_affinity_preferred"] = base.get("node_affinity_preferred", []) + [term]
        elif purpose == "require":
            base["node_affinity_required"] = base.get("node_affinity_required", []) + [
                {"matchExpressions": [NODE_PURPOSE]}]
    base.update(_storage(src, out))
    return base


def _storage(src: Source, out: dict) -> dict:
    """Home storage: dynamic claims are gpulab's home_storage; static and extra volumes are overrides."""
    storage = src.get("singleuser", "storage", default={}) or {}
    kube = out["gpulab"].setdefault("spawner", {}).setdefault("kubernetes", {})
    kind = storage.get("type", "dynamic")
    override: dict = {}
    home_mount = storage.get("homeMountPath", "/home/jovyan")
    if home_mount == "/home/jovyan":
        src.take("singleuser", "storage", "homeMountPath")
    if kind == "dynamic":
        src.take("singleuser", "storage", "type")
        home: dict = {}
        if storage.get("capacity"):
            home["capacity"] = str(src.take("singleuser", "storage", "capacity"))
        if (storage.get("dynamic") or {}).get("storageClass"):
            home["storage_class"] = src.take("singleuser", "storage", "dynamic", "storageClass")
        if home:
            kube["home_storage"] = home
        template = (storage.get("dynamic") or {}).get("pvcNameTemplate")
        if template:  # the users' existing claims are found under the name they have
            override["pvc_name_template"] = src.take("singleuser", "storage", "dynamic", "pvcNameTemplate")
        if (storage.get("dynamic") or {}).get("storageAccessModes") == ["ReadWriteOnce"]:
            src.take("singleuser", "storage", "dynamic", "storageAccessModes")
    elif kind == "none":
        src.take("singleuser", "storage", "type")
        src.take("singleuser", "storage", "capacity")
        src.take("singleuser", "storage", "dynamic")
        kube["home_storage"] = {"capacity": ""}
    elif kind == "static" and (storage.get("static") or {}).get("pvcName"):
        src.take("singleuser", "storage", "type")
        src.take("singleuser", "storage", "capacity")
        src.take("singleuser", "storage", "dynamic")
        src.take("singleuser", "storage", "homeMountPath")
        static = src.take("singleuser", "storage", "static")
        kube["home_storage"] = {"capacity": ""}
        mount = {"name": "home", "mountPath": home_mount}
        if static.get("subPath"):
            mount["subPath"] = static["subPath"]
        override["volumes"] = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": static["pvcName"]}}}
        override["volume_mounts"] = {"home": mount}
    if storage.get("extraLabels"):
        override["storage_extra_labels"] = src.take("singleuser", "storage", "extraLabels")
    for key, setting in (("extraVolumes", "volumes"), ("extraVolumeMounts", "volume_mounts")):
        extra = src.get("singleuser", "storage", key)
        if not extra:
            continue
        src.take("singleuser", "storage", key)
        items = extra.items() if isinstance(extra, dict) else ((f"{v.get('name', 'extra')}-{i}", v)
                                                              for i, v in enumerate(extra))
        override.setdefault(setting, {}).update({str(k): copy.deepcopy(v) for k, v in items})
    if not kube:
        del out["gpulab"]["spawner"]["kubernetes"]
    return override


def _profile(src: Source, i: int, item: dict, notes: list[str]) -> dict:
    at = ("singleuser", "profileList", str(i))
    profile = {}
    for key in PROFILE_KEYS:
        if key in item:
            src.taken.add(at + (key,))
            profile[key] = copy.deepcopy(item[key])
    for key in item:
        if key not in PROFILE_KEYS:
            notes.append(f"singleuser.profileList[{i}].{key}: {WHY['singleuser.profileList']}")
            src.taken.add(at + (key,))
    profile.setdefault("display_name", profile.get("slug") or f"Profile {i + 1}")
    # gpulab's chart finds a profile by `id` (prePuller.profiles), so every converted profile has one.
    slug = profile.pop("slug", None)
    profile = {"id": slug if slug and ID.match(slug) else _slug(slug or profile["display_name"]), **profile}
    if slug and not ID.match(slug):
        notes.append(f"singleuser.profileList[{i}].slug: {slug!r} is not a gpulab id; the profile's id is {profile['id']!r}")
    for name, option in (profile.get("profile_options") or {}).items():
        where = f"singleuser.profileList[{i}].profile_options.{name}"
        for key in [k for k in option if k not in ("display_name", "choices", "unlisted_choice")]:
            notes.append(f"{where}.{key}: {WHY['singleuser.profileList']}")
            del option[key]
        for choice_name, choice in (option.get("choices") or {}).items():
            for key in [k for k in choice if k not in CHOICE_KEYS]:
                notes.append(f"{where}.choices.{choice_name}.{key}: {WHY['singleuser.profileList']}")
                del choice[key]
        for key in [k for k in option.get("unlisted_choice") or {} if k not in UNLISTED_KEYS]:
            notes.append(f"{where}.unlisted_choice.{key}: {WHY['singleuser.profileList']}")
            del option["unlisted_choice"][key]
    overrides = [("kubespawner_override", profile.get("kubespawner_override") or {})]
    for name, option in (profile.get("profile_options") or {}).items():
        overrides += [(f"profile_options.{name}.choices.{c}.kubespawner_override", choice.get("kubespawner_override") or {})
                      for c, choice in (option.get("choices") or {}).items()]
        overrides.append((f"profile_options.{name}.unlisted_choice.kubespawner_override",
                          (option.get("unlisted_choice") or {}).get("kubespawner_override") or {}))
    for where, override in overrides:
        for key in [k for k in override if k in NOT_OVERRIDABLE]:
            notes.append(f"singleuser.profileList[{i}].{where}.{key}: gpulab builds it from `profiles`")
            del override[key]
    return profile


def _profiles(src: Source, notes: list[str]) -> list[dict]:
    listed = src.get("singleuser", "profileList") or []
    if not isinstance(listed, list):
        return []
    src.take("singleuser", "profileList")
    return [_profile(src, i, item, notes) if isinstance(item, dict) else _not_a_profile(i, notes)
            for i, item in enumerate(listed)]


def _not_a_profile(i: int, notes: list[str]) -> dict:
    notes.append(f"singleuser.profileList[{i}]: not a mapping, left out")
    return {}


def _resources(src: Source) -> dict:
    """singleuser.cpu/memory as gpulab profile keys."""
    keys: dict = {}
    for kind in ("limit", "guarantee"):
        cpu = src.get("singleuser", "cpu", kind)
        if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) and cpu > 0:
            keys.setdefault("cpu", {})[kind] = src.take("singleuser", "cpu", kind)
        memory = src.get("singleuser", "memory", kind)
        if memory is not None and kubespawner_size(memory):
            src.take("singleuser", "memory", kind)
            keys.setdefault("memory", {})[kind] = kubespawner_size(memory)
    return keys


SPAWNER_KEYS = {"cpu_limit": ("cpu", "limit"), "cpu_guarantee": ("cpu", "guarantee"),
                "mem_limit": ("memory", "limit"), "mem_guarantee": ("memory", "guarantee"),
                "node_selector": ("node_selector",), "tolerations": ("tolerations",)}


def _apply_hub_wide(profile: dict, resources: dict, node_selector: dict, tolerations: list, base: dict) -> dict:
    """A profile with z2jh's hub-wide settings under it: the profile's own overrides still win."""
    own = profile.get("kubespawner_override") or {}
    for group, values in resources.items():
        for kind, value in values.items():
            setting = {"cpu": "cpu", "memory": "mem"}[group] + f"_{kind}"
            if setting not in own:
                profile.setdefault(group, {})[kind] = value
    if node_selector and "node_selector" not in own:
        profile["node_selector"] = dict(node_selector)
    if tolerations and "tolerations" not in own:
        profile["tolerations"] = copy.deepcopy(tolerations)
    merged = _merge_override(base, own)
    if merged:
        profile["kubespawner_override"] = merged
    return profile


def _culling(src: Source, out: dict, profiles: list[dict]) -> None:
    cull = src.get("cull")
    if not isinstance(cull, dict):
        return
    if cull.get("enabled") is False:
        src.take("cull")
        out["gpulab"]["culling"] = {"enabled": False}
        return
    src.take("cull", "enabled")
    timeout = cull.get("timeout", 3600)
    src.take("cull", "timeout")
    for profile in profiles:
        profile.setdefault("idle_timeout", int(timeout))
    if cull.get("every") is not None:
        out["gpulab"]["culling"] = {"check_interval": int(src.take("cull", "every"))}
    for key, same in (("users", False), ("removeNamedServers", False), ("maxAge", 0), ("adminUsers", True)):
        if cull.get(key) == same:  # what gpulab does anyway
            src.take("cull", key)


def _pre_puller(src: Source, out: dict, profiles: list[dict]) -> None:
    puller = src.get("prePuller") or {}  # absent: z2jh pulls the profiles' images all the same
    if not isinstance(puller, dict):
        return
    continuous = (puller.get("continuous") or {}).get("enabled", True)
    src.take("prePuller", "continuous", "enabled")
    if (puller.get("hook") or {}).get("enabled", True) is False:
        src.take("prePuller", "hook")
    if not continuous:
        out["prePuller"] = {"enabled": False}
        src.take("prePuller")
        return
    extra = [f"{image['name']}:{image['tag']}" for image in (puller.get("extraImages") or {}).values()
             if isinstance(image, dict) and image.get("name") and image.get("tag")]
    if len(extra) == len(puller.get("extraImages") or {}):
        src.take("prePuller", "extraImages")
    with_profiles = puller.get("pullProfileListImages", True)
    src.take("prePuller", "pullProfileListImages")
    pause = puller.get("pause", {}).get("image") if isinstance(puller.get("pause"), dict) else None
    if isinstance(pause, dict) and pause.get("name") and pause.get("tag"):
        src.take("prePuller", "pause", "image")
        out["prePuller"] = {"pause": {"repository": pause["name"], "tag": str(pause["tag"])}}
    pulled = {}
    for profile in profiles:
        images = [] if not with_profiles else _images_of(profile)
        images += [image for image in extra if image not in images]
        if images:
            pulled[profile["id"]] = {"images": images}
    if pulled:
        out.setdefault("prePuller", {})["profiles"] = pulled


def _images_of(profile: dict) -> list[str]:
    images = []
    layers = [profile.get("kubespawner_override") or {}]
    for option in (profile.get("profile_options") or {}).values():
        layers += [choice.get("kubespawner_override") or {} for choice in (option.get("choices") or {}).values()]
    for layer in layers:
        image = layer.get("image")
        if isinstance(image, str) and "{" not in image and image not in images:
            images.append(image)
    return images


def _slug(display_name: str) -> str:
    from slugify import slugify

    return slugify(display_name)


def _chart_keys(src: Source, out: dict, notes: list[str]) -> None:
    """z2jh keys that are the same thing in gpulab's chart or settings."""
    gpulab = out["gpulab"]
    spawner = gpulab.setdefault("spawner", {})
    kube = spawner.setdefault("kubernetes", {})
    for key, target in (("uid", "uid"), ("fsGid", "fs_gid"), ("serviceAccountName", "service_account")):
        if src.get("singleuser", key) is not None:
            kube[target] = src.take("singleuser", key)
    policy = src.get("singleuser", "image", "pullPolicy")
    if policy in ("IfNotPresent", "Always", "Never"):
        kube["image_pull_policy"] = src.take("singleuser", "image", "pullPolicy")
    if isinstance(src.get("singleuser", "startTimeout"), int) and src.get("singleuser", "startTimeout") >= 10:
        spawner["start_timeout"] = src.take("singleuser", "startTimeout")
    if isinstance(src.get("singleuser", "defaultUrl"), str) and src.get("singleuser", "defaultUrl").startswith("/"):
        spawner["default_url"] = src.take("singleuser", "defaultUrl")
    environment = src.get("singleuser", "extraEnv") or {}
    if isinstance(environment, dict):
        plain = {str(k): str(v) for k, v in environment.items() if isinstance(v, (str, int, float, bool))}
        for name in environment:
            src.take("singleuser", "extraEnv", str(name))
            if str(name) not in plain:
                notes.append(f"singleuser.extraEnv.{name}: {WHY['singleuser.extraEnv']}")
        if plain:
            spawner["environment"] = plain
    if src.get("hub", "allowNamedServers") is not None:
        spawner.setdefault("named_servers", {})["enabled"] = bool(src.take("hub", "allowNamedServers"))
    if isinstance(src.get("hub", "namedServerLimitPerUser"), int):
        spawner.setdefault("named_servers", {})["limit_per_user"] = src.take("hub", "namedServerLimitPerUser")
    if isinstance(src.get("hub", "baseUrl"), str):
        base_url = src.take("hub", "baseUrl")
        if base_url != "/":
            gpulab.setdefault("hub", {})["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
    if src.get("debug", "enabled") is True:
        src.take("debug", "enabled")
        gpulab.setdefault("hub", {})["log_level"] = "DEBUG"
    extra_config = src.get("hub", "extraConfig")
    if isinstance(extra_config, dict) and all(isinstance(v, str) for v in extra_config.values()):
        out["hub"] = {"extraConfig": dict(src.take("hub", "extraConfig"))}
    elif isinstance(extra_config, str) and extra_config.strip():
        out["hub"] = {"extraConfig": {"extra-config": src.take("hub", "extraConfig")}}
    for key in ("nodeSelector", "tolerations"):
        if src.get("hub", key):
            out.setdefault("hub", {})[key] = src.take("hub", key)
    service = src.get("proxy", "service") or {}
    if isinstance(service, dict):
        chart_service = {}
        if service.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
            chart_service["type"] = src.take("proxy", "service", "type")
        for key in ("annotations", "loadBalancerIP"):
            if service.get(key):
                chart_service[key] = src.take("proxy", "service", key)
        if chart_service:
            out["proxy"] = {"service": chart_service}
    for key in ("nameOverride", "fullnameOverride"):
        if isinstance(src.get(key), str):
            out[key] = src.take(key)
    if not kube:
        del spawner["kubernetes"]
    if not spawner:
        del gpulab["spawner"]


def convert_z2jh(values: dict) -> tuple[dict, list[str]]:
    """(gpulab chart values, ["KEY: why" for each key not carried]) for a z2jh values mapping."""
    src = Source(copy.deepcopy(values))
    out: dict = {"gpulab": {}}
    notes: list[str] = []
    _auth(src, out, notes)
    _chart_keys(src, out, notes)
    base = _base_override(src, out)
    resources = _resources(src)
    node_selector = src.take("singleuser", "nodeSelector", default={})
    tolerations = list(src.take("singleuser", "extraTolerations", default=[]))
    tolerations += list(src.take("scheduling", "userPods", "tolerations", default=[]))
    profiles = [p for p in _profiles(src, notes) if p]
    if not profiles and (base or resources or node_selector or tolerations or src.get("cull")):
        profiles = [{"id": "default", "display_name": "Default", "default": True}]
    profiles = [_apply_hub_wide(p, resources, node_selector, tolerations, base) for p in profiles]
    _culling(src, out, profiles)
    _pre_puller(src, out, profiles)
    if profiles:
        out["gpulab"]["profiles"] = profiles
    for path in OFF_MATTERS:
        if src.get(*path, "enabled") is True:  # as gpulab's chart has it
            src.take(*path, "enabled")
    seen = set()
    for path in src.left():
        key, why = _why(path)
        if key not in seen:
            seen.add(key)
            notes.append(f"{key}: {why}")
    return out, notes
