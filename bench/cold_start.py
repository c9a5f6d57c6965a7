"""Cold start: a fresh process imports app.py and answers a first
``/.well-known/openid-configuration`` through the Lambda handler, vs the floor (bench/floor_app.py:
a bare Chalice app that creates one boto3 DynamoDB client and answers one request).

Each is run N times as a subprocess, alternating; the figure is the median of the wall time measured
inside the child from its first statement to the end of the first response (import + first request).
The median since spawn (fork/exec + interpreter start-up, the same for both) is reported too.

    .venv/bin/python bench/cold_start.py [--runs 15] [--json PATH]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ENV, ROOT, emit, figure, median  # noqa: E402

BUDGET = 1.5


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.update(ENV)
    # Nothing is called, but should anything try, it meets a closed loopback port.
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_child(mode: str, env: dict) -> dict:
    env = dict(env, BENCH_SPAWN_NS=str(time.time_ns()))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cold_child.py"), mode],
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"cold child {mode} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != 200:
        raise RuntimeError(f"cold child {mode} answered {result['status']}")
    return result


def import_profile(env: dict, top: int = 12) -> str:
    """The heaviest imports of the broker's cold path (python -X importtime, cumulative us)."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "bench" / "cold_child.py"),
                           "broker"], env=env, cwd=str(ROOT), capture_output=True, text=True,
                          timeout=60)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        head, cumulative, name = line.split("|", 2)
        rows.append((int(cumulative), int(head.split(":", 1)[1]), name.strip()))
    rows.sort(reverse=True)
    lines = ["cumulative ms  self ms  module"]
    lines += [f"{c / 1000:13.1f} {s / 1000:8.1f}  {n}" for c, s, n in rows[:top]]
    return "\n".join(lines)


def main(argv: list[str]) -> dict:
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 15
    env = _child_env()
    for mode in ("broker", "floor"):  # warm the .pyc and page caches; not counted
        run_child(mode, env)
    samples: dict[str, list[dict]] = {"broker": [], "floor": []}
    for i in range(runs):
        order = ("broker", "floor") if i % 2 == 0 else ("floor", "broker")
        for mode in order:
            samples[mode].append(run_child(mode, env))

    def med(mode, key):
        return median([s[key] for s in samples[mode]])

    broker, floor = med("broker", "total_ms"), med("floor", "total_ms")
    ratio = broker / floor
    result = {
        "script": "cold_start",
        "figures": [figure(
            "cold start (import + first /.well-known/openid-configuration)", broker, "ms",
            ref_name="floor (bare Chalice + boto3 DynamoDB client)", ref_value=floor,
            budget=f"<= {BUDGET}x floor", ok=ratio <= BUDGET,
            note=(f"medians of {runs} runs each; broker import {med('broker', 'import_ms'):.0f} ms + "
                  f"first request {med('broker', 'first_request_ms'):.1f} ms "
                  f"({samples['broker'][0]['modules']} modules); floor import "
                  f"{med('floor', 'import_ms'):.0f} ms + first request "
                  f"{med('floor', 'first_request_ms'):.1f} ms "
                  f"({samples['floor'][0]['modules']} modules). Since spawn (incl. interpreter "
                  f"start): broker {med('broker', 'since_spawn_ms'):.0f} ms, floor "
                  f"{med('floor', 'since_spawn_ms'):.0f} ms."))],
        "notes": [],
        "samples": samples,
    }
    heaviest = import_profile(env)
    result["profile_title"] = "Heaviest imports on the broker's cold path (python -X importtime)"
    result["profile"] = heaviest
    return result


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
