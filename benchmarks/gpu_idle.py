"""GPU-hours held idle: gpulab's culler beside jupyterhub-idle-culler's policy, on the same trace.

A seeded generator writes a recorded-style trace of N GPU servers (default 200) over 48 hours,
minute by minute: interactive work (cells every few minutes, the GPU mostly quiet), training
bursts (GPU 85-99%, the kernel busy; some print progress, some are silent), long idle stretches
with the JupyterLab tab left open (it polls the server, so the hub's last_activity stays fresh,
but no code runs and the GPU is at 0%), tabs closed, and notebooks left open overnight.

The trace is replayed, with the same idle timeout and a check every minute, through:
- stock jupyterhub-idle-culler's policy: cull when the hub's last_activity is older than the
  timeout (activity only; it knows nothing of kernels or GPUs);
- gpulab's culler: the real decision function, gpulab.extensions.culler.decisions.decide, with a
  GpuHistory fed every check, as the culler service feeds it.
A culled server stays stopped until its trace shows its user running code again: they start a
new one then, which holds a GPU from that minute on (counted as a restart).

Prints GPU-hours held and held idle (utilisation at or under the threshold) by each, the ratio
of idle GPU-hours (goal: gpulab at most 0.25x stock), and busy training culled (goal: 0 for gpulab).

Run: `.venv/bin/python benchmarks/gpu_idle.py [--servers 200] [--seed 19] [--timeout 3600] [--threshold 10]`
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpulab.extensions.culler.decisions import GpuHistory, ServerView, decide  # noqa: E402

HORIZON_MINUTES = 48 * 60
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Minute:
    """What one minute of a server looks like from outside."""

    polled: bool  # the hub's last_activity moves (a tab open, output printed, a cell run)
    code_ran: bool  # a kernel or terminal did something (its own last_activity moves)
    busy: bool  # a kernel is executing
    utilization: int  # GPU percent


@dataclass
class Trace:
    name: str
    start: int  # minute the server started
    minutes: list[Minute]


def work(rng: random.Random, length: int) -> list[Minute]:
    """Interactive: cells every few minutes, short GPU tests now and then."""
    out = []
    for _ in range(length):
        cell = rng.random() < 0.25
        out.append(Minute(True, cell, cell, rng.randint(20, 70) if cell and rng.random() < 0.3 else rng.randint(0, 5)))
    return out


def train(rng: random.Random, length: int) -> list[Minute]:
    verbose = rng.random() < 0.6  # a silent cell moves no activity until it ends
    body = [Minute(verbose, verbose, True, rng.randint(85, 99)) for _ in range(length - 1)]
    return body + [Minute(True, True, False, rng.randint(85, 99))]  # the cell ends


def idle(length: int, tab_open: bool) -> list[Minute]:
    return [Minute(tab_open, False, False, 0) for _ in range(length)]


def generate(servers: int, seed: int) -> list[Trace]:
    rng = random.Random(seed)
    traces = []
    for i in range(servers):
        kind = rng.choices(["trainer", "overnight", "explorer"], weights=[0.45, 0.35, 0.2])[0]
        minutes: list[Minute] = []
        if kind == "trainer":
            while True:
                minutes += work(rng, rng.randint(20, 120))
                minutes += train(rng, rng.randint(30, 360))
                minutes += idle(rng.randint(60, 900), tab_open=rng.random() < 0.6)
                if rng.random() < 0.3 or len(minutes) > HORIZON_MINUTES:
                    break
        elif kind == "overnight":  # a day's work, the notebook left open overnight, more work
            minutes += work(rng, rng.randint(120, 240))
            if rng.random() < 0.5:
                minutes += train(rng, rng.randint(60, 240))
            minutes += idle(rng.randint(600, 960), tab_open=True)
            minutes += work(rng, rng.randint(60, 240))
        else:  # explores, closes the tab, never stops the server
            minutes += work(rng, rng.randint(30, 90))
            minutes += idle(rng.randint(120, 600), tab_open=rng.random() < 0.3)
        start = rng.randint(0, 12 * 60)
        traces.append(Trace(f"{kind}-{i:03d}", start, minutes[:HORIZON_MINUTES - start]))
    return traces


@dataclass
class Outcome:
    held_minutes: int = 0
    idle_minutes: int = 0
    culled: int = 0
    busy_culled: int = 0
    restarts: int = 0


class NeverCulls:
    """No culling at all: what the servers would hold if nobody stopped them."""

    def start(self, trace) -> None:
        pass

    def cull(self, *args) -> bool:
        return False


class StockPolicy:
    """jupyterhub-idle-culler: cull when last_activity is older than --timeout (nothing else)."""

    name = "jupyterhub-idle-culler (activity only)"

    def __init__(self, timeout: int, threshold: int):
        self.window = timedelta(seconds=timeout)

    def start(self, trace: Trace) -> None:
        pass

    def cull(self, now: datetime, view: ServerView, minute: Minute, code_activity: datetime) -> bool:
        return now - view.last_activity >= self.window


class GpulabPolicy:
    """gpulab's culler: the service's decision function over its GPU history."""

    name = "gpulab culler (decide)"

    def __init__(self, timeout: int, threshold: int):
        self.timeout, self.threshold = timeout, threshold

    def start(self, trace: Trace) -> None:
        self.history = GpuHistory(keep=timedelta(seconds=self.timeout + 120))

    def cull(self, now: datetime, view: ServerView, minute: Minute, code_activity: datetime) -> bool:
        self.history.record(now, {view.devices[0]: minute.utilization})
        return decide(view, self.timeout, now, minute.busy, self.history, self.threshold, code_activity).cull


def replay(traces: list[Trace], policy, threshold: int) -> Outcome:
    outcome = Outcome()
    for trace in traces:
        policy.start(trace)
        started = T0 + timedelta(minutes=trace.start)
        last_activity = code_activity = started
        held = True
        for offset, minute in enumerate(trace.minutes):
            now = T0 + timedelta(minutes=trace.start + offset)
            if not held:
                if not minute.code_ran:
                    continue
                held, started, outcome.restarts = True, now, outcome.restarts + 1  # the user is back: a new server
                last_activity = code_activity = now
                policy.start(trace)
            if minute.polled:
                last_activity = now
            if minute.code_ran:
                code_activity = now
            outcome.held_minutes += 1
            outcome.idle_minutes += minute.utilization <= threshold
            view = ServerView(trace.name, "", "gpu", last_activity, (f"GPU-{trace.name}",), started)
            if policy.cull(now, view, minute, code_activity):
                outcome.culled += 1
                outcome.busy_culled += minute.busy or minute.utilization > threshold
                held = False
    return outcome


def idle_within_timeout(traces: list[Trace], timeout: int, threshold: int) -> float:
    """Idle GPU-hours less than `timeout` after code last ran (or the server started): what no
    culler with this timeout frees, since its user may be back any minute."""
    minutes = 0
    for trace in traces:
        since_code = 0
        for minute in trace.minutes:
            since_code = 0 if minute.code_ran else since_code + 1
            minutes += minute.utilization <= threshold and since_code * 60 < timeout
    return minutes / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--timeout", type=int, default=3600, help="idle timeout, seconds, for both")
    parser.add_argument("--threshold", type=int, default=10, help="GPU percent at or under which it is idle")
    args = parser.parse_args()

    traces = generate(args.servers, args.seed)
    outcomes = {cls.name: replay(traces, cls(args.timeout, args.threshold), args.threshold)
                for cls in (StockPolicy, GpulabPolicy)}
    uncut = replay(traces, NeverCulls(), args.threshold)

    print(f"{args.servers} GPU servers, 48 h, seed {args.seed}, idle timeout {args.timeout}s, "
          f"idle = GPU at or under {args.threshold}%; without culling: {uncut.held_minutes / 60:.0f} GPU-hours held, "
          f"{uncut.idle_minutes / 60:.0f} idle")
    print(f"{'policy':<42} {'GPU-h held':>10} {'idle GPU-h':>10} {'culled':>7} {'restarts':>8} {'busy culled':>11}")
    for name, o in outcomes.items():
        print(f"{name:<42} {o.held_minutes / 60:>10.1f} {o.idle_minutes / 60:>10.1f} {o.culled:>7} {o.restarts:>8} "
              f"{o.busy_culled:>11}")
    print(f"idle GPU-hours within the timeout of code running (no culler with this timeout frees them): "
          f"{idle_within_timeout(traces, args.timeout, args.threshold):.1f}")
    stock, gpulab = outcomes[StockPolicy.name], outcomes[GpulabPolicy.name]
    ratio = gpulab.idle_minutes / stock.idle_minutes if stock.idle_minutes else float("nan")
    print(f"idle GPU-hours, gpulab / stock: {ratio:.2f}x (goal <= 0.25x); busy training culled by gpulab: "
          f"{gpulab.busy_culled} (goal 0), by stock: {stock.busy_culled}")


if __name__ == "__main__":
    main()
