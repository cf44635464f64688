"""`gpulab migrate z2jh VALUES.yaml [-o OUT]`: a zero-to-jupyterhub values file as gpulab chart values.

Exit codes: 0 converted (what was not carried is listed on stderr), 2 the input is unreadable,
not YAML, or not a mapping.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .migrate_z2jh import convert_z2jh


def register(commands) -> None:
    migrate = commands.add_parser("migrate", help="convert another hub's configuration to gpulab's")
    sources = migrate.add_subparsers(dest="migrate_source", metavar="FROM", required=True)
    z2jh = sources.add_parser("z2jh", help="a zero-to-jupyterhub values file to a gpulab chart values file")
    z2jh.add_argument("values", metavar="VALUES.yaml", help="the z2jh values file")
    z2jh.add_argument("-o", "--output", metavar="OUT", help="write the gpulab values here (default: stdout)")
    z2jh.set_defaults(func=migrate_z2jh)


def migrate_z2jh(args) -> int:
    try:
        values = yaml.safe_load(Path(args.values).read_text())
    except OSError as exc:
        return _fail(f"cannot read {args.values}: {exc.strerror}")
    except yaml.YAMLError as exc:
        return _fail(f"{args.values} is not valid YAML: {exc}")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        return _fail(f"{args.values}: expected a mapping of z2jh values, got {type(values).__name__}")
    converted, not_carried = convert_z2jh(values)
    text = ("# Converted from zero-to-jupyterhub values by `gpulab migrate z2jh`.\n"
            + yaml.safe_dump(converted, sort_keys=False, allow_unicode=True))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    for line in not_carried:
        print(f"not carried: {line}", file=sys.stderr)
    if args.output:
        print(f"wrote {args.output}; keys not carried: {len(not_carried)}", file=sys.stderr)
    return 0


def _fail(message: str) -> int:
    print(f"gpulab migrate z2jh: {message}", file=sys.stderr)
    return 2
