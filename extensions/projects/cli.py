"""`gpulab project ...`: the projects API from a terminal (in a gpulab server, or anywhere with
GPULAB_URL and GPULAB_TOKEN set). Exit codes: 0 done, 1 refused or failed, 2 invalid input."""

from __future__ import annotations

import json
import sys
from urllib.parse import quote

from gpulab.hub_config.client import ClientError, client_from_environment

from .membership import ROLES

API = "services/projects/api/projects"


def register(commands) -> None:
    project = commands.add_parser("project", help="team projects: create, list, show, manage members")
    actions = project.add_subparsers(dest="project_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, func, *arguments: tuple[tuple, dict]):
        sub = actions.add_parser(name, help=help_text)
        for args, kwargs in arguments:
            sub.add_argument(*args, **kwargs)
        sub.add_argument("--json", action="store_true", help="print the API's JSON answer")
        sub.set_defaults(func=lambda parsed: run(func, parsed))

    name = (("name",), {"metavar": "NAME", "help": "project name, e.g. vision"})
    member = (("member",), {"metavar": "MEMBER", "help": "hub user name (or group name with --group)"})
    group = (("--group",), {"action": "store_true", "help": "MEMBER is a hub group"})
    action("create", "create a project; you become its maintainer", create, name,
           (("--description",), {"default": "", "help": "what the project is about"}))
    action("list", "list your projects (admins: all projects)", list_projects)
    action("show", "show a project and its members", show, name)
    action("add-member", "add a hub user or group to a project", add_member, name, member,
           (("--role",), {"choices": ROLES, "default": "editor", "help": "default: %(default)s"}), group)
    action("set-role", "change a member's role", set_role, name, member,
           (("role",), {"choices": ROLES, "metavar": "ROLE", "help": " | ".join(ROLES)}), group)
    action("remove-member", "remove a member from a project", remove_member, name, member, group)
    action("delete", "delete a project (its folder is kept in the project root's .trash)", delete, name)
    action("share", "share one of your servers with every member of a project", share, name,
           (("--server",), {"default": "", "help": "a named server (default: your default server)"}))
    action("unshare", "stop sharing a server with a project", unshare, name,
           (("--server",), {"default": "", "help": "a named server (default: the default server)"}),
           (("--owner",), {"default": None, "help": "the server's owner, if not you (admins)"}))


def run(func, args) -> int:
    try:
        client = client_from_environment()
        result, text = func(client, args)
    except ClientError as error:
        print(f"gpulab: {error.message}", file=sys.stderr)
        return 2 if error.status == 400 else 1
    if args.json:
        print(json.dumps(result, indent=2))
    elif text:
        print(text)
    return 0


def _member_path(args) -> str:
    kind = "group" if args.group else "user"
    return f"{API}/{quote(args.name, safe='')}/members/{kind}/{quote(args.member, safe='')}"


# ---------------------------------------------------------------- actions (client, args) -> (JSON, text)


def create(client, args):
    project = client.request("POST", API, {"name": args.name, "description": args.description})
    return project, f"created {project['name']}; its folder is {project['folder']}\n" + describe(project)


def list_projects(client, args):
    listed = client.request("GET", API)
    return listed, table(listed["projects"])


def show(client, args):
    project = client.request("GET", f"{API}/{quote(args.name, safe='')}")
    return project, describe(project)


def add_member(client, args):
    body = {"kind": "group" if args.group else "user", "name": args.member, "role": args.role}
    project = client.request("POST", f"{API}/{quote(args.name, safe='')}/members", body)
    return project, describe(project)


def set_role(client, args):
    project = client.request("PATCH", _member_path(args), {"role": args.role})
    return project, describe(project)


def remove_member(client, args):
    client.request("DELETE", _member_path(args))
    return {}, f"removed {args.member} from {args.name}"


def delete(client, args):
    client.request("DELETE", f"{API}/{quote(args.name, safe='')}")
    return {}, f"deleted {args.name}"


def share(client, args):
    shared = client.request("POST", f"{API}/{quote(args.name, safe='')}/shared-servers", {"server": args.server})
    return shared, "\n".join(f"{s['url']}  shared with {', '.join(s['members']) or 'nobody yet'}"
                             for s in shared["servers"])


def unshare(client, args):
    owner = args.owner or client.request("GET", "hub/api/user")["name"]
    path = f"{API}/{quote(args.name, safe='')}/shared-servers/{quote(owner, safe='')}"
    client.request("DELETE", path + (f"/{quote(args.server, safe='')}" if args.server else ""))
    return {}, f"stopped sharing {owner}'s {'server ' + args.server if args.server else 'default server'} with {args.name}"


# ---------------------------------------------------------------- text output (pure)


def table(projects: list[dict]) -> str:
    if not projects:
        return "no projects"
    rows = [("NAME", "ROLE", "MEMBERS", "DESCRIPTION")]
    rows += [(p["name"], p["your_role"] or "-", str(p["member_count"]), p["description"]) for p in projects]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows)


def describe(project: dict) -> str:
    lines = [f"{project['name']}: {project['description']}".rstrip(": "),
             f"  folder: {project['folder']}   your role: {project['your_role'] or '-'}", "  members:"]
    lines += [f"    {m['name']}{' (group)' if m['kind'] == 'group' else ''}: {m['role']}" for m in project["members"]]
    return "\n".join(lines)

