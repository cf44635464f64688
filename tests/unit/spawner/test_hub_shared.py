"""What a hub's spawners share, made from typed settings: made once while the settings are equal,
made again when they differ, and kept per hub."""

from __future__ import annotations

from types import SimpleNamespace

from gpulab.hub_config.typed_settings import Environments
from gpulab.spawner.hub_shared import shared_made_from


def spawner_of(hub_settings: dict) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(settings=hub_settings))


def test_made_once_per_hub_while_the_settings_are_equal_and_again_when_they_differ():
    made = []

    def make(settings: Environments) -> tuple:
        made.append(settings)
        return settings.offer

    hub, other_hub = {}, {}
    first = Environments(offer=("a", "b"))
    assert shared_made_from(spawner_of(hub), "environments", first, make) == ("a", "b")
    # another spawner of the same hub, with equal settings (a copy, not the same object): nothing made
    assert shared_made_from(spawner_of(hub), "environments", Environments(offer=("a", "b")), make) == ("a", "b")
    assert made == [first]
    changed = Environments(offer=("c",))
    assert shared_made_from(spawner_of(hub), "environments", changed, make) == ("c",)
    assert shared_made_from(spawner_of(other_hub), "environments", first, make) == ("a", "b")
    assert made == [first, changed, first]
