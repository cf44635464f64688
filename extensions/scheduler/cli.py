"""`gpulab run`, `logs`, `stop` and `schedule ...`: the scheduler from a terminal or a laptop (REST API + token).

`gpulab run NOTEBOOK.ipynb` runs a notebook through Papermill; `gpulab run train.py -- ARGS` and
`gpulab run -- COMMAND...` submit a job: the working folder (or --dir) goes along as a snapshot.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import time
from pathlib import Path

from gpulab.hub_config.client import ClientError, client_from_environment

from .job_request import job_request, script_command
from .parameters import ParameterError, merge
from .run_options import notebook_location
from .snapshots import SnapshotError, pack

API = "services/scheduler/api/"
FINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "STOPPED")
ID = re.compile(r"^[0-9a-f-]{36}$")


class UsageError(Exception):
    """A command-line mistake (exit 2)."""


def read_yaml_file(path: str) -> tuple[str, str]:
    try:
        return path, Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"-f {path}: cannot read it ({getattr(error, 'strerror', None) or error})") from None


def parameters(args) -> dict:
    """The parameter options, merged as Papermill merges them (-b, -f, -y, -p, -r; later wins)."""
    try:
        return merge(base64_yaml=args.parameters_base64 or [],
                     yaml_files=[read_yaml_file(path) for path in args.parameters_file or []],
                     yaml_texts=args.parameters_yaml or [], inferred=args.parameter or [],
                     raw=args.parameters_raw or [])
    except ParameterError as error:
        raise UsageError(str(error)) from None


def read_notebook(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such notebook")
    try:
        return json.loads(file.read_text())
    except ValueError:
        raise UsageError(f"{path}: not a notebook (not JSON)") from None


def given_options(args, keys: tuple[str, ...]) -> dict:
    """The options of `keys` given on the command line, and the notifications asked for."""
    body = {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}
    if getattr(args, "option", None):
        body["profile_options"] = profile_options(args.option)
    if args.notify_webhook or args.notify_email:
        body["notify"] = {"webhooks": args.notify_webhook or [], "emails": args.notify_email or [],
                          "on": args.notify_on or ["failure"]}
    return body


def profile_options(given: list[str]) -> dict[str, str]:
    """--option NAME=VALUE (a listed choice) or NAME--unlisted-choice=VALUE (text of your own)."""
    options = {}
    for item in given:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"--option {item!r}: expected NAME=VALUE, e.g. --option image=pytorch")
        options[name] = value
    return options


def request_body(args) -> dict:
    body = {"name": args.name or Path(args.notebook).stem, "notebook": read_notebook(args.notebook),
            "notebook_name": Path(args.notebook).name, "input_path": notebook_location(Path(args.notebook), os.environ.get("HOME", "")),
            "parameters": parameters(args), "max_retries": args.max_retries}
    return {**body, **given_options(args, ("profile", "environment", "project", "timeout_seconds", "kernel_name", "cwd"))}


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
    if not args.notebook or not args.notebook.endswith(".ipynb"):
        return _run_job(args)
    if args.trailing:
        raise UsageError("a notebook takes parameters (-p NAME=VALUE), not arguments after --")
    if args.dir or args.nodes != 1:
        raise UsageError("--dir and --nodes are for scripts and commands; a notebook runs on its own")
    client = client_from_environment()
    run = client.request("POST", f"{API}runs", request_body(args))
    print(run["id"])
    if not args.wait:
        return 0
    run = wait(client, run["id"])
    print(show_run(run))
    error = run.get("error") or {}
    if error.get("traceback"):
        print("\n".join(error["traceback"]), file=sys.stderr)
    if error.get("cell_index") is not None:  # numbered as in the notebook the user opens, and as Papermill says
        print(f"the failing cell: cell {error['cell_index']} of {run['notebook_name']} "
              f"(In [{error.get('execution_count')}])", file=sys.stderr)
    if args.output and "output.ipynb" in run["outputs"]:
        Path(args.output).write_bytes(client.download(f"{API}runs/{run['id']}/files/output.ipynb"))
    return 0 if run["status"] == "COMPLETED" else 1


def job_body(args) -> dict:
    """A script or command job's request: its command and a snapshot of --dir (default: here)."""
    if any(getattr(args, key, None) for key in ("parameter", "parameters_raw", "parameters_yaml", "parameters_file",
                                                "parameters_base64", "kernel_name", "cwd")):
        raise UsageError("-p, -r, -y, -f, -b, -k and --cwd are for notebooks; a script's arguments go after --")
    folder = Path(args.dir or ".").resolve()
    if args.notebook:
        script = Path(args.notebook).resolve()
        if not script.is_file():
            raise UsageError(f"{args.notebook}: no such file")
        try:
            command = script_command(script, folder, args.trailing)
        except ValueError:
            raise UsageError(f"{args.notebook} is not inside {folder} (the folder that goes with the job; "
                             f"see --dir)") from None
        kind, name = "script", script.stem
    elif args.trailing:
        kind, command, name = "command", list(args.trailing), Path(args.trailing[0]).name
    else:
        raise UsageError("what to run: a notebook, a script (gpulab run train.py -- ARGS) "
                         "or a command (gpulab run -- COMMAND ...)")
    try:
        snapshot = pack(folder)
    except SnapshotError as error:
        raise UsageError(str(error)) from None
    body = job_request(kind, command, args.name or name, folder, snapshot, max_retries=args.max_retries,
                       nodes=args.nodes)
    return {**body, **given_options(args, ("profile", "environment", "project", "timeout_seconds"))}


def follow(client, run_id: str, out=None, poll: float = 0.5) -> dict:
    """Print the run's log as it grows until the run has ended; the run as it ended."""
    out = out or sys.stdout
    offset = 0
    while True:
        chunk = client.request("GET", f"{API}runs/{run_id}/log?offset={offset}")
        if chunk["text"]:
            out.write(chunk["text"])
            out.flush()
        offset = chunk["next_offset"]
        if chunk["ended"]:
            return client.request("GET", f"{API}runs/{run_id}")
        if not chunk["text"]:
            time.sleep(poll)


def _run_job(args) -> int:
    client = client_from_environment()
    run = client.request("POST", f"{API}jobs", job_body(args))
    print(run["id"])
    if run["status"] == "WAITING" or run["message"]:
        print(f"  {run['status'].lower()}  {run['message']}", file=sys.stderr)
    if not args.wait:
        return 0
    run = follow(client, run["id"], sys.stderr)
    print(show_run(run))
    if run["status"] == "COMPLETED":
        return 0
    return run["exit_code"] if run.get("exit_code") else 1


def _logs_of_run(args) -> int:
    client = client_from_environment()
    if args.follow:
        follow(client, run_id(args.run_id))
        return 0
    sys.stdout.write(client.request("GET", f"{API}runs/{run_id(args.run_id)}/log")["text"])
    return 0


def _stop(args) -> int:
    print(show_run(client_from_environment().request("POST", f"{API}runs/{run_id(args.run_id)}/stop")))
    return 0


def _create(args) -> int:
    if args.notebook and args.notebook.endswith(".ipynb"):
        if args.trailing or args.dir:
            raise UsageError("a notebook takes parameters (-p NAME=VALUE), not --dir or arguments after --")
        body, path = {**request_body(args), "cron": args.cron, "timezone": args.timezone}, "schedules"
    else:  # a script or a command, snapshotted now, once
        body, path = {**job_body(args), "cron": args.cron, "timezone": args.timezone}, "job-schedules"
    schedule = client_from_environment().request("POST", f"{API}{path}", body)
    print(f"{schedule['id']}  next run {schedule['next_run']}")
    return 0


def _list(args) -> int:
    for s in client_from_environment().request("GET", f"{API}schedules"):
        state = "active" if s["active"] else "paused"
        print(f"{s['id']}  {state:<6}  {s['cron']:<15} {s['timezone']:<15} {s['profile']:<10} {s['name']}")
    return 0


def schedule_id(text: str) -> str:
    if not ID.match(text):
        raise UsageError(f"no schedule {text!r} (ids look like those `gpulab schedule list` prints)")
    return text


def run_id(text: str) -> str:
    if not ID.match(text):
        raise UsageError(f"no run {text!r} (ids look like those `gpulab schedule runs` prints)")
    return text


def _set_active(active: bool):
    def command(args) -> int:
        client_from_environment().request("PATCH", f"{API}schedules/{schedule_id(args.id)}", {"active": active})
        return 0

    return command


def _delete(args) -> int:
    client_from_environment().request("DELETE", f"{API}schedules/{schedule_id(args.id)}")
    return 0


def _runs(args) -> int:
    path = f"{API}runs" + (f"?schedule={schedule_id(args.id)}" if args.id else "")
    for run in client_from_environment().request("GET", path):
        print(show_run(run))
    return 0


def _logs(args) -> int:
    sys.stdout.write(client_from_environment().download(f"{API}runs/{run_id(args.run_id)}/files/log.txt").decode(errors="replace"))
    return 0


def one_line(message: str) -> str:
    """An error body as one line: the text of an HTML page (a proxy's or a server's), whitespace folded."""
    if "<" in message and ">" in message:
        title = re.search(r"<title>(.*?)</title>", message, re.I | re.S)
        message = title.group(1) if title else re.sub(r"<[^>]+>", " ", message)
    return " ".join(html.unescape(message).split()) or "no message"


def _guard(command):
    def guarded(args) -> int:
        try:
            return command(args)
        except UsageError as error:
            print(f"gpulab: {one_line(str(error))}", file=sys.stderr)
            return 2
        except ClientError as error:
            print(f"gpulab: {one_line(error.message)}", file=sys.stderr)
            return 2 if 400 <= error.status < 500 else 1
        except OSError as error:  # writing --output, a dropped connection...
            print(f"gpulab: {one_line(str(error))}", file=sys.stderr)
            return 1

    return guarded


def _common(parser, notebook_help="the notebook file (it is uploaded; later edits do not change the run)",
            optional: bool = False) -> None:
    parser.add_argument("notebook", help=notebook_help, nargs="?" if optional else None)
    parser.add_argument("--name", help="a name for the run or schedule (default: the notebook's)")
    parser.add_argument("--profile", help="compute profile, e.g. gpu-1 (default: the default profile)")
    parser.add_argument("--environment", help="environment id from the catalog (default: the first that fits)")
    parser.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="a choice within the profile, as in the spawn form: --option image=pytorch, or "
                             "--option image--unlisted-choice=TEXT for one of your own (repeatable)")
    parser.add_argument("--project", help="run it for a project (you need to be an editor)")
    # Papermill's parameter options and precedence (-b < -f < -y < -p < -r); -p and -r take NAME=VALUE
    parser.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE",
                        help="a parameter typed as Papermill types -p: int, float, True/False/None, else a string; "
                             "-p lr=0.01 -p epochs=3 (repeatable)")
    parser.add_argument("-r", "--parameters-raw", action="append", metavar="NAME=VALUE",
                        help="a parameter kept as a string, as Papermill's -r (repeatable)")
    parser.add_argument("-y", "--parameters-yaml", action="append", metavar="YAML",
                        help="parameters as a YAML mapping, e.g. -y 'layers: [64, 32]' (repeatable)")
    parser.add_argument("-f", "--parameters-file", action="append", metavar="FILE",
                        help="parameters from a YAML file (repeatable)")
    parser.add_argument("-b", "--parameters-base64", action="append", metavar="BASE64",
                        help="parameters as base64-encoded YAML (repeatable)")
    parser.add_argument("-k", "--kernel", dest="kernel_name", metavar="NAME",
                        help="kernel to run, as Papermill's -k (default: the notebook's kernelspec)")
    parser.add_argument("--cwd", metavar="DIR",
                        help="working directory of the kernel, relative to your home on the hub "
                             "(default: the notebook's folder, else your home)")
    parser.add_argument("--timeout", dest="timeout_seconds", type=int, help="whole-run timeout in seconds")
    parser.add_argument("--max-retries", type=int, default=0, help="retries after a failure (default 0)")
    parser.add_argument("--notify-webhook", action="append", metavar="URL", help="POST events here (repeatable)")
    parser.add_argument("--notify-email", action="append", metavar="ADDRESS", help="e-mail events here (repeatable)")
    parser.add_argument("--notify-on", action="append", choices=["start", "success", "failure"],
                        help="which events to send (default: failure)")


def register(commands) -> None:
    run = commands.add_parser(
        "run", help="run a notebook (Papermill), a script or a command once, now, on the hub",
        usage="gpulab run NOTEBOOK.ipynb [options] | SCRIPT [options] [-- ARGS...] | [options] -- COMMAND...")
    _common(run, "a notebook (.ipynb, run through Papermill) or a script (run with the environment's python "
                 "in a snapshot of --dir); leave it out to run the command after --", optional=True)
    run.add_argument("--dir", metavar="FOLDER",
                     help="a job's folder, copied when it is submitted (default: here; at most 64 MiB of files; "
                          ".git, __pycache__, .venv and outputs/ are left out)")
    run.add_argument("--nodes", type=int, default=1, help="a job's pods, one per node (Kubernetes only; default 1)")
    run.add_argument("--wait", action="store_true",
                     help="wait for the result (a job's output streams meanwhile); exit non-zero if it fails")
    run.add_argument("--output", metavar="FILE", help="with --wait: save the executed notebook here")
    run.set_defaults(func=_guard(_run), takes_trailing=True, trailing=[])

    logs = commands.add_parser("logs", help="a run's output; -f follows it until the run ends")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("run_id", help="run or job id (as gpulab run prints it)")
    logs.set_defaults(func=_guard(_logs_of_run))
    stop = commands.add_parser("stop", help="stop a queued or running run or job (its processes end)")
    stop.add_argument("run_id", help="run or job id")
    stop.set_defaults(func=_guard(_stop))

    schedule = commands.add_parser("schedule", help="notebooks that run on a cron schedule")
    actions = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="schedule a notebook, a script or a command",
        usage="gpulab schedule create NOTEBOOK.ipynb --cron CRON [options] | SCRIPT --cron CRON [options] "
              "[-- ARGS...] | --cron CRON [options] -- COMMAND...")
    _common(create, "a notebook (.ipynb) or a script (run in a snapshot of --dir, taken now); leave it out to "
                    "schedule the command after --", optional=True)
    create.add_argument("--cron", required=True, help='when, as 5 cron fields, e.g. "0 6 * * 1-5"')
    create.add_argument("--timezone", default="UTC", help="IANA time zone of the cron fields (default UTC)")
    create.add_argument("--dir", metavar="FOLDER", help="a script's or command's folder (default: here), copied now")
    create.add_argument("--nodes", type=int, default=1, help="a job's pods, one per node (Kubernetes only)")
    create.set_defaults(func=_guard(_create), takes_trailing=True, trailing=[])
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
