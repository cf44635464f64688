"""`gpulab run` and `gpulab schedule ...`: the scheduler from a terminal or a laptop (REST API + token)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gpulab.hub_config.client import ClientError, client_from_environment
from gpulab.hub_config.editing import parse_value

API = "services/scheduler/api/"
FINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED")


class UsageError(Exception):
    """A command-line mistake (exit 2)."""


def parameters(pairs: list[str]) -> dict:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-p {pair!r}: expected NAME=VALUE, e.g. -p lr=0.01")
        found[key] = parse_value(value)
    return found


def read_notebook(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such notebook")
    try:
        return json.loads(file.read_text())
    except ValueError:
        raise UsageError(f"{path}: not a notebook (not JSON)") from None


def request_body(args) -> dict:
    body = {"name": args.name or Path(args.notebook).stem, "notebook": read_notebook(args.notebook),
            "notebook_name": Path(args.notebook).name, "input_path": args.notebook,
            "parameters": parameters(args.parameter), "max_retries": args.max_retries}
    for key in ("profile", "environment", "project", "timeout_seconds"):
        if getattr(args, key, None) is not None:
            body[key] = getattr(args, key)
    if args.notify_webhook or args.notify_email:
        body["notify"] = {"webhooks": args.notify_webhook or [], "emails": args.notify_email or [],
                          "on": args.notify_on or ["failure"]}
    return body


def show_run(run: dict) -> str:
    line = f"{run['id']}  {run['status']:<9}  {run['schedule_name']}"
    if run.get("duration_seconds") is not None:
        line += f"  {run['duration_seconds']:.1f}s"
    if run.get("message"):
        line += f"  ({run['message']})"
    return line


def wait(client, run_id: str) -> dict:
    last = None
    while True:
        run = client.request("GET", f"{API}runs/{run_id}")
        progress = (run["status"], run["cells_done"], run["cells_total"], run["message"])
        if progress != last:
            print(f"  {run['status'].lower()}  {run['cells_done']}/{run['cells_total']} cells"
                  + (f"  {run['message']}" if run["message"] else ""), file=sys.stderr)
            last = progress
        if run["status"] in FINAL:
            return run
        time.sleep(1)


def _run(args) -> int:
    client = client_from_environment()
    run = client.request("POST", f"{API}runs", request_body(args))
    print(run["id"])
    if not args.wait:
        return 0
    run = wait(client, run["id"])
    print(show_run(run))
    if run.get("error", {}) and run["error"].get("traceback"):
        print("\n".join(run["error"]["traceback"]), file=sys.stderr)
    if args.output and "output.ipynb" in run["outputs"]:
        Path(args.output).write_bytes(client.download(f"{API}runs/{run['id']}/files/output.ipynb"))
    return 0 if run["status"] == "COMPLETED" else 1


def _create(args) -> int:
    body = {**request_body(args), "cron": args.cron, "timezone": args.timezone}
    schedule = client_from_environment().request("POST", f"{API}schedules", body)
    print(f"{schedule['id']}  next run {schedule['next_run']}")
    return 0


def _list(args) -> int:
    for s in client_from_environment().request("GET", f"{API}schedules"):
        state = "active" if s["active"] else "paused"
        print(f"{s['id']}  {state:<6}  {s['cron']:<15} {s['timezone']:<15} {s['profile']:<10} {s['name']}")
    return 0


def _set_active(active: bool):
    def command(args) -> int:
        client_from_environment().request("PATCH", f"{API}schedules/{args.id}", {"active": active})
        return 0

    return command


def _delete(args) -> int:
    client_from_environment().request("DELETE", f"{API}schedules/{args.id}")
    return 0


def _runs(args) -> int:
    path = f"{API}runs" + (f"?schedule={args.id}" if args.id else "")
    for run in client_from_environment().request("GET", path):
        print(show_run(run))
    return 0


def _logs(args) -> int:
    sys.stdout.write(client_from_environment().download(f"{API}runs/{args.run_id}/files/log.txt").decode(errors="replace"))
    return 0


def _guard(command):
    def guarded(args) -> int:
        try:
            return command(args)
        except UsageError as error:
            print(f"gpulab: {error}", file=sys.stderr)
            return 2
        except ClientError as error:
            print(f"gpulab: {error.message}", file=sys.stderr)
            return 2 if 400 <= error.status < 500 else 1

    return guarded


def _common(parser) -> None:
    parser.add_argument("notebook", help="the notebook file (it is uploaded; later edits do not change the run)")
    parser.add_argument("--name", help="a name for the run or schedule (default: the notebook's)")
    parser.add_argument("--profile", help="compute profile, e.g. gpu-1 (default: the default profile)")
    parser.add_argument("--environment", help="environment id from the catalog (default: the first that fits)")
    parser.add_argument("--project", help="run it for a project (you need to be an editor)")
    parser.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE",
                        help="a parameter, read as YAML: -p lr=0.01 -p epochs=3 (repeatable)")
    parser.add_argument("--timeout", dest="timeout_seconds", type=int, help="whole-run timeout in seconds")
    parser.add_argument("--max-retries", type=int, default=0, help="retries after a failure (default 0)")
    parser.add_argument("--notify-webhook", action="append", metavar="URL", help="POST events here (repeatable)")
    parser.add_argument("--notify-email", action="append", metavar="ADDRESS", help="e-mail events here (repeatable)")
    parser.add_argument("--notify-on", action="append", choices=["start", "success", "failure"],
                        help="which events to send (default: failure)")


def register(commands) -> None:
    run = commands.add_parser("run", help="run a notebook once, now, on the hub (Papermill)")
    _common(run)
    run.add_argument("--wait", action="store_true", help="wait for the result; exit 1 if the run fails")
    run.add_argument("--output", metavar="FILE", help="with --wait: save the executed notebook here")
    run.set_defaults(func=_guard(_run))

    schedule = commands.add_parser("schedule", help="notebooks that run on a cron schedule")
    actions = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="schedule a notebook")
    _common(create)
    create.add_argument("--cron", required=True, help='when, as 5 cron fields, e.g. "0 6 * * 1-5"')
    create.add_argument("--timezone", default="UTC", help="IANA time zone of the cron fields (default UTC)")
    create.set_defaults(func=_guard(_create))
    actions.add_parser("list", help="your schedules (and your projects')").set_defaults(func=_guard(_list))
    for name, func, text in (("pause", _set_active(False), "stop triggering a schedule"),
                             ("resume", _set_active(True), "trigger it again (missed slots are not replayed)"),
                             ("delete", _delete, "delete a schedule")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id", help="schedule id")
        sub.set_defaults(func=_guard(func))
    runs = actions.add_parser("runs", help="recent runs, of one schedule or all")
    runs.add_argument("id", nargs="?", help="schedule id")
    runs.set_defaults(func=_guard(_runs))
    logs = actions.add_parser("logs", help="a run's log")
    logs.add_argument("run_id", help="run id")
    logs.set_defaults(func=_guard(_logs))
