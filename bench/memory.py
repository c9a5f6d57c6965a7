"""Memory: peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a process that has served
1,000 warm federated logins through the Lambda handler in-process (upstream IdP prepared in-process,
storage on the embedded AWS endpoint in another process). The current RSS is sampled along the way
to show whether it grows with the number of logins.

    .venv/bin/python bench/memory.py [--logins 1000] [--json PATH]
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import AwsServer, emit, figure, login, start_broker  # noqa: E402

BUDGET_MB = 128


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str]) -> dict:
    n = int(argv[argv.index("--logins") + 1]) if "--logins" in argv else 1000
    with AwsServer() as aws_server:
        setup = start_broker(aws_server)
        login(setup)
        samples = [(1, rss_mb())]
        step = max(1, n // 4)
        for i in range(2, n + 1):
            login(setup)
            if i % step == 0 or i == n:
                samples.append((i, rss_mb()))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else 0.0
    return {
        "script": "memory",
        "figures": [figure(
            f"peak RSS after {n} warm logins", peak, "MB", budget=f"<= {BUDGET_MB} MB",
            ok=peak <= BUDGET_MB,
            note=("RSS (MB) after k logins: " + ", ".join(f"{k}: {v:.1f}" for k, v in samples)
                  + f"; growth from login {samples[1][0]} to {samples[-1][0]}: {growth:+.1f} MB. "
                  "The process also holds the benchmark driver and the in-process IdP "
                  "(a few MB)."))],
        "notes": [],
    }


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
