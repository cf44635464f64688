"""`gpulab ssh-key add|list|delete` and `gpulab ssh-config`, through the SSH service's API.

They use `client_from_environment()`: inside a gpulab server they work as they are; on a
laptop, export GPULAB_URL and GPULAB_TOKEN (an API token from <hub>/hub/token).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpulab.hub_config.client import ClientError, client_from_environment

API = "services/ssh/api/"


def register(commands) -> None:
    key = commands.add_parser("ssh-key", help="manage the SSH public keys that let you ssh into your servers")
    actions = key.add_subparsers(dest="ssh_key_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a public key (e.g. ~/.ssh/id_ed25519.pub)")
    add.add_argument("file", metavar="FILE", help="the public key file, or - to read it from standard input")
    add.add_argument("--comment", default="", help="a note shown in the list (default: the key's own comment)")
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", help="list your keys with their fingerprints")
    listing.set_defaults(func=_list)
    delete = actions.add_parser("delete", help="remove one of your keys")
    delete.add_argument("key", metavar="ID|FINGERPRINT", help="the key's id or SHA256 fingerprint, as `list` shows")
    delete.set_defaults(func=_delete)

    config = commands.add_parser("ssh-config", help="print a ~/.ssh/config block for your servers")
    config.add_argument("--server", default="", metavar="NAME", help="a named server (default: your default server)")
    config.add_argument("--alias", default="", metavar="HOST", help="the Host name in the block (default: gpulab[-NAME])")
    config.add_argument("--known-hosts", action="store_true", help="print the gateway's known_hosts line instead")
    config.set_defaults(func=_config)


def _fail(message: str, code: int) -> int:
    print(f"gpulab: {message}", file=sys.stderr)
    return code


def _call(method: str, path: str, body=None):
    return client_from_environment().request(method, API + path, body)


def _run(action) -> int:
    try:
        return action()
    except ClientError as exc:
        return _fail(exc.message, 2 if 400 <= exc.status < 500 and exc.status not in (401, 403, 404) else 1)


def _add(args) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        path = Path(args.file).expanduser()
        if not path.name.endswith(".pub") and path.with_name(path.name + ".pub").exists():
            return _fail(f"{path} looks like a private key; did you mean {path}.pub?", 2)
        try:
            text = path.read_text()
        except OSError as exc:
            return _fail(f"cannot read {path}: {exc.strerror}", 2)

    def add() -> int:
        record = _call("POST", "keys", {"public_key": text, "comment": args.comment})
        print(f"added {record['fingerprint']} ({record['algorithm']}) as key {record['id']}")
        return 0

    return _run(add)


def _list(args) -> int:
    def show() -> int:
        records = _call("GET", "keys")
        if not records:
            print("no SSH keys; add one with `gpulab ssh-key add ~/.ssh/id_ed25519.pub`")
        for record in records:
            used = record["last_used_at"] or "never used"
            print(f"{record['id']:>4}  {record['fingerprint']}  {record['algorithm']:<12} {record['comment']}  ({used})")
        return 0

    return _run(show)


def _delete(args) -> int:
    def delete() -> int:
        key_id = args.key
        if not key_id.isdigit():
            matches = [r["id"] for r in _call("GET", "keys") if r["fingerprint"] == key_id]
            if not matches:
                return _fail(f"you have no key with fingerprint {key_id}", 1)
            key_id = str(matches[0])
        _call("DELETE", f"keys/{key_id}")
        print(f"deleted key {args.key}")
        return 0

    return _run(delete)


def _config(args) -> int:
    from .web import ssh_config_block

    def show() -> int:
        info = _call("GET", "connection")
        print(info["known_hosts_line"] if args.known_hosts else ssh_config_block(info, args.server, args.alias), end="\n" if args.known_hosts else "")
        return 0

    return _run(show)
