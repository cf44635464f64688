"""KubeSpawner settings set by hand in jupyterhub_config.d that gpulab owns (pure).

A z2jh operator's extraConfig often sets `c.KubeSpawner.profile_list` or `image`. gpulab
builds those from its own settings, so a hand-set value would be silently ignored; the hub
refuses to start instead, naming gpulab's setting. `environment` set on KubeSpawner is
honoured: it is merged over gpulab's (which it would otherwise replace wholesale).
"""

from __future__ import annotations

from traitlets.config import Config

SECTIONS = ("Spawner", "KubeSpawner", "GpulabKubeSpawner")
OWNED = {
    "profile_list": "set `profiles` in gpulab.yaml (`gpulab migrate z2jh` converts a z2jh profileList)",
    "image": "offer the image as an environment (`environments.catalog`), or give a profile "
             "`kubespawner_override: {image: ...}`",
    "image_spec": "offer the image as an environment (`environments.catalog`), or give a profile "
                  "`kubespawner_override: {image: ...}`",
    "options_form": "gpulab's spawn form shows `profiles` and their `profile_options`",
    "options_from_form": "gpulab's spawn form reads `profile`, `environment` and `profile-option-*` fields",
    "profile_form_template": "gpulab's spawn form shows `profiles` and their `profile_options`",
    "additional_profile_form_template_paths": "gpulab's spawn form shows `profiles` and their `profile_options`",
}


def owned_settings_set_by_hand(c: Config) -> list[tuple[str, str]]:
    """(setting, what to do instead) for each setting gpulab owns that `c` sets."""
    return [(f"{section}.{name}", instead) for section in SECTIONS if section in c
            for name, instead in OWNED.items() if name in c[section]]


def merge_hand_set_environment(c: Config) -> None:
    """`c.KubeSpawner.environment` set by hand adds to gpulab's variables instead of replacing them."""
    for section in ("KubeSpawner", "GpulabKubeSpawner"):
        if section in c and "environment" in c[section]:
            hand_set = c[section].pop("environment")
            c.Spawner.environment = {**c.Spawner.get("environment", {}), **hand_set}
            literal = c.GpulabKubeSpawner.get("literal_environment", [])
            c.GpulabKubeSpawner.literal_environment = [name for name in literal if name not in hand_set]
