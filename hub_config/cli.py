"""The `gpulab` command. Subcommands stay thin: they parse, call one function, and map errors to exit codes.

Exit codes: 0 success, 1 a failed operation, 2 invalid settings or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from gpulab.spawner.backends import backend

from . import __version__
from .editing import EditError, add_item, dump, mask_secrets, parse_value, remove_item, set_value, unset_value
from .settings import (
    DEFAULT_FILENAME,
    ConfigError,
    bundled_schema,
    load_settings,
    parse_yaml,
    plain,
    secret_paths,
    validate,
)

# Modules that add subcommands: each has `register(subparsers)`.
EXTENSION_COMMANDS: list[str] = [
    "gpulab.extensions.scheduler.cli",
    "gpulab.extensions.ssh.cli",
    "gpulab.extensions.projects.cli",
    "gpulab.extensions.usage.cli",
    "gpulab.hub_config.migrate_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpulab", description="A JupyterHub distribution for ML teams.")
    parser.add_argument("--version", action="version", version=f"gpulab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the hub in the foreground on this machine")
    up.add_argument("--config", metavar="FILE", help=f"settings file (default: ./{DEFAULT_FILENAME} if present)")
    up.add_argument("--data-dir", metavar="DIR", help="where gpulab keeps its state (default: .gpulab)")
    up.add_argument("--ip", help="address to listen on (default: 0.0.0.0)")
    up.add_argument("--port", type=int, help="port to listen on (default: 8000)")
    up.add_argument("--admin", metavar="NAME", action="append", help="make NAME an admin (repeatable)")
    up.set_defaults(func=_up)

    down = commands.add_parser("down", help="with --purge: remove what gpulab made on this machine")
    down.add_argument("--purge", action="store_true",
                      help="remove gpulab's system accounts, project groups, data directory and projects folder")
    down.add_argument("--remove-homes", action="store_true", help="remove the users' homes too (kept otherwise)")
    down.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    down.add_argument("--config", metavar="FILE", help=f"settings file (default: ./{DEFAULT_FILENAME} if present)")
    down.add_argument("--data-dir", metavar="DIR", help="the data directory `gpulab up` used (default: .gpulab)")
    down.set_defaults(func=_down)

    config = commands.add_parser("config", help="show, check and edit gpulab.yaml")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    def config_action(name, help_text, func, *positional):
        sub = config_commands.add_parser(name, help=help_text)
        for arg, arg_help in positional:
            sub.add_argument(arg, help=arg_help)
        sub.add_argument("--config", metavar="FILE", default=DEFAULT_FILENAME, help="settings file (default: %(default)s)")
        sub.set_defaults(func=func)

    key_help = ("KEY", "dotted key path, e.g. hub.port")
    value_help = ("VALUE", "value, read as YAML: 8000, true, [a, b]")
    config_action("show", "print the effective settings (defaults filled, secrets hidden)", _config_show)
    config_action("validate", "check the settings file; exit 2 if it is invalid", _config_validate)
    config_action("set", "set KEY to VALUE (the file is written only if the result is valid)", _config_edit, key_help, value_help)
    config_action("unset", "remove KEY, so its default applies", _config_edit, key_help)
    config_action("add-item", "append VALUE to the list at KEY", _config_edit, key_help, value_help)
    config_action("remove-item", "remove VALUE from the list at KEY", _config_edit, key_help, value_help)
    schema = config_commands.add_parser("schema", help="print the settings JSON Schema")
    schema.set_defaults(func=lambda args: _print(json.dumps(bundled_schema(), indent=2)))

    db = commands.add_parser("db", help="gpulab's database")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="apply pending migrations")
    db_upgrade.add_argument("--config", metavar="FILE", help=f"settings file (default: ./{DEFAULT_FILENAME} if present)")
    db_upgrade.set_defaults(func=_db_upgrade)

    import importlib

    for module in EXTENSION_COMMANDS:
        importlib.import_module(module).register(commands)
    return parser


def _print(text: str) -> int:
    print(text)
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(f"gpulab: {message}", file=sys.stderr)
    return code


def _up(args) -> int:
    from .up import run_up

    return run_up(args)


def _down(args) -> int:
    from .purge import carry_out, hub_listening, plan_purge
    from .up import find_settings_file

    if not args.purge:
        return _fail("`gpulab up` runs in the foreground: stop it with Ctrl-C or SIGTERM (servers keep running). "
                     "`gpulab down --purge` removes everything gpulab made here.", 2)
    overrides = {"hub": {"data_dir": str(Path(args.data_dir).resolve())}} if args.data_dir else {}
    try:
        s = load_settings(find_settings_file(args.config), overrides).settings
    except ConfigError as exc:
        return _fail(f"invalid settings:\n{exc}", 2)
    if not backend(s.spawner.backend).machine_local:  # the docker backend's accounts and homes are local ones
        return _fail("on Kubernetes, remove gpulab with `helm uninstall` (volumes follow your storage class's policy)", 2)
    running = hub_listening(s)
    if running:
        return _fail(f"a hub still answers at {running}: stop `gpulab up` first", 1)
    plan = plan_purge(s, args.remove_homes)
    print(f"gpulab down --purge removes:\n{plan.describe()}")
    if plan.empty:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail("not removing anything without confirmation: run it in a terminal, or add --yes", 2)
        if input("Type 'purge' to remove all of the above: ").strip() != "purge":
            return _fail("nothing removed", 1)
    problems = carry_out(plan)
    if problems:
        return _fail("removed the rest, but:\n" + "\n".join(f"  {p}" for p in problems), 1)
    return _print("removed")


def _config_show(args) -> int:
    path = Path(args.config)
    try:
        settings = load_settings(path if path.exists() else None)
    except ConfigError as exc:
        return _fail(f"invalid settings:\n{exc}", 2)
    shown = mask_secrets(settings.values, secret_paths(bundled_schema()))
    return _print(dump(shown).rstrip())


def _config_validate(args) -> int:
    path = Path(args.config)
    if not path.exists():
        # `gpulab up` runs on the defaults when there is no file, so they are what is checked.
        load_settings(None)
        return _print(f"{path}: no such file; gpulab runs on the defaults, which are valid")
    try:
        load_settings(path)
    except ConfigError as exc:
        return _fail(f"invalid settings:\n{exc}", 2)
    return _print(f"{path}: valid")


def _config_edit(args) -> int:
    path = Path(args.config)
    original = path.read_text() if path.exists() else ""
    try:
        doc = parse_yaml(original, str(path))
    except ConfigError as exc:
        return _fail(f"not editing an invalid file:\n{exc}", 2)
    action = {"set": set_value, "add-item": add_item, "remove-item": remove_item}.get(args.config_command)
    try:
        if action is None:
            unset_value(doc, args.KEY)
        else:
            action(doc, args.KEY, parse_value(args.VALUE))
    except EditError as exc:
        return _fail(str(exc), 2)
    text = dump(doc, like=original)
    problems = validate(plain(doc), doc=parse_yaml(text, str(path)))
    if problems:
        listed = "\n".join(p.render(str(path)) for p in problems)
        return _fail(f"not written, the result would be invalid:\n{listed}", 2)
    _write_atomically(path, text)
    return 0


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent.resolve(), prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _db_upgrade(args) -> int:
    from .up import find_settings_file, upgrade_state

    try:
        loaded = load_settings(find_settings_file(args.config))
    except ConfigError as exc:
        return _fail(f"invalid settings:\n{exc}", 2)
    loaded.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    upgrade_state(loaded.settings)
    return _print("database is up to date")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # What follows `--` is a job's own command line (`gpulab run train.py -- --lr 0.01`), which
    # argparse would otherwise read as gpulab's options or mismatch with optional positionals.
    trailing = None
    if "--" in argv:
        cut = argv.index("--")
        argv, trailing = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if trailing is not None:
        if not getattr(args, "takes_trailing", False):
            parser.error("'--' belongs to `gpulab run`: the script's arguments or the command to run follow it")
        args.trailing = trailing
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
