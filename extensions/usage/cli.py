"""`gpulab usage --since 2026-11-01 --by project`: the usage report from a terminal (in a gpulab
server, or anywhere with GPULAB_URL and GPULAB_TOKEN set). Exit codes: 0 done, 1 failed,
2 invalid input (the service's 400, e.g. a bad date)."""

from __future__ import annotations

import json
import sys
from urllib.parse import urlencode

from gpulab.compute.usage_report import GROUPINGS
from gpulab.hub_config.client import ClientError, client_from_environment

API = "services/usage/api/usage"


def register(commands) -> None:
    usage = commands.add_parser("usage", help="GPU-, CPU- and server-hours for a period (admins: everyone's)")
    usage.add_argument("--since", help="first day, e.g. 2026-11-01 (default: the first of this month)")
    usage.add_argument("--until", help="last day, included (default: now)")
    usage.add_argument("--by", default="user", choices=GROUPINGS, help="default: %(default)s")
    output = usage.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print CSV")
    output.add_argument("--json", action="store_true", help="print the API's JSON answer")
    usage.set_defaults(func=run)


def query(args, fmt: str = "json") -> str:
    params = {"by": args.by, **{k: v for k, v in (("since", args.since), ("until", args.until)) if v}}
    if fmt != "json":
        params["format"] = fmt
    return f"{API}?{urlencode(params)}"


def run(args) -> int:
    try:
        client = client_from_environment()
        if args.csv:
            sys.stdout.write(client.download(query(args, "csv")).decode())
            return 0
        report = client.request("GET", query(args))
    except ClientError as error:
        print(f"gpulab: {error.message}", file=sys.stderr)
        return 2 if error.status == 400 else 1
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


def table(report: dict) -> str:
    """The report as aligned text (pure)."""
    head = f"{report['since'][:10]} to {report['until'][:16].replace('T', ' ')} UTC, by {report['by']} " \
           f"(idle: GPU at or under {report['idle_threshold_percent']}%)"
    if report.get("utilization_note"):
        head += f"\n{report['utilization_note']}"
    if not report["rows"]:
        return head + "\nno usage"
    rows = [(report["by"].upper(), "GPU-H", "IDLE", "CPU-H", "SERVER-H", "RUN-H")]
    rows += [(r["key"], f"{r['gpu_hours']:.2f}", f"{100 * r['idle_share']:.0f}%", f"{r['cpu_hours']:.2f}",
              f"{r['server_hours']:.2f}", f"{r['run_hours']:.2f}") for r in report["rows"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join([head] + lines)
