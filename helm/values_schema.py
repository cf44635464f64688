"""Writes helm/gpulab/values.schema.json from two sources, so the chart and a local install
read gpulab's settings through one schema:

- helm/chart-values.schema.yaml: the chart's own values (its `$defs` are inlined);
- gpulab's bundled settings schema (hub_config/schema/), under `gpulab`, less the keys the
  chart sets itself (OWNED; templates/_helpers.tpl "gpulab.settings" writes them) and less
  the secrets (keys marked writeOnly): the settings go into a ConfigMap, secrets never do.

Run from the repository root: `.venv/bin/python helm/values_schema.py` (or `--check`, which
exits 1 when the file is not current). tests/helm checks it is current.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from ruamel.yaml import YAML

from gpulab.hub_config.settings import bundled_schema, secret_paths

HELM = Path(__file__).resolve().parent
CHART_SCHEMA = HELM / "chart-values.schema.yaml"
OUTPUT = HELM / "gpulab" / "values.schema.json"

# Settings the chart's shape decides: the proxy is its own Deployment, the database is
# PostgreSQL, the hub and its services listen for other pods, user servers are pods.
OWNED = {
    "hub": ["ip", "port", "internal_port", "data_dir", "db_url", "service_host", "metrics_public", "tls"],
    "": ["proxy", "database"],
    "spawner": ["backend"],
    "spawner.kubernetes": ["namespace", "hub_url"],
    "ssh": ["bind_address", "servers_url"],
}
WHY = {
    "hub": "tls: terminate HTTPS at the load balancer or an Ingress in front of <release>-proxy-public",
}
# Where a secret the values cannot hold comes from instead (keys marked writeOnly).
SECRET_INSTEAD = {
    ("auth", "oauth", "client_secret"): "give it in secrets.oauthClientSecret",
}


def _inline_defs(node, defs: dict):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            merged = {**copy.deepcopy(defs[ref.removeprefix("#/$defs/")]),
                      **{key: value for key, value in node.items() if key != "$ref"}}
            return _inline_defs(merged, defs)
        return {key: _inline_defs(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline_defs(item, defs) for item in node]
    return node


def gpulab_values_schema() -> dict:
    """gpulab's settings schema without the keys the chart owns."""
    schema = copy.deepcopy(bundled_schema())
    for key in ("$schema", "$id", "title"):
        schema.pop(key, None)
    for parent, keys in OWNED.items():
        node = schema
        for part in filter(None, parent.split(".")):
            node = node["properties"][part]
        for key in keys:
            del node["properties"][key]
        note = f"Set by the chart: {', '.join(keys)}."
        if parent in WHY:
            note += f" ({WHY[parent]}.)"
        node["description"] = f"{node['description'].rstrip()} {note}"
    for path in sorted(secret_paths(schema)):
        holder = schema
        for part in path[:-1]:
            holder = holder["properties"][part]
        del holder["properties"][path[-1]]
        instead = SECRET_INSTEAD.get(path, "not available through the chart")
        holder["description"] = f"{holder['description'].rstrip()} Secret, not accepted here: {path[-1]} ({instead})."
    schema["description"] = (
        "gpulab's settings, a gpulab.yaml document (the schema of `gpulab config schema`); the chart "
        "writes them into the hub's ConfigMap. " + schema["description"]
    )
    return schema


def values_schema() -> dict:
    chart = YAML(typ="safe").load(CHART_SCHEMA.read_text())
    schema = _inline_defs(chart, chart.get("$defs", {}))
    schema["properties"]["gpulab"] = gpulab_values_schema()
    return schema


def render() -> str:
    return json.dumps(values_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is not current: run .venv/bin/python helm/values_schema.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
