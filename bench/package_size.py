"""Package: the size of the deployment.zip that ``chalice package --stage dev`` builds, and what is
in it (compressed bytes by top-level directory).

Chalice reuses its dependency build from .chalice/deployments/ when requirements.txt is unchanged;
on a first run it fetches the wheels with pip.

    .venv/bin/python bench/package_size.py [--json PATH]
"""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, figure  # noqa: E402

BUDGET_BYTES = 10_000_000  # 10 MB (decimal, the stricter reading)


def main(argv: list[str]) -> dict:
    chalice = Path(sys.executable).parent / "chalice"
    out = Path(tempfile.mkdtemp(prefix="bench-package-"))
    try:
        env = dict(os.environ, AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        done = subprocess.run([str(chalice), "package", "--stage", "dev", str(out / "pkg")],
                              cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"chalice package failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        archive = out / "pkg" / "deployment.zip"
        size = archive.stat().st_size
        parts: collections.Counter = collections.Counter()
        uncompressed = 0
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                top = info.filename.split("/", 1)[0]
                parts[top] += info.compress_size
                uncompressed += info.file_size
    finally:
        shutil.rmtree(out, ignore_errors=True)
    largest = ", ".join(f"{name} {value / 1e6:.2f}" for name, value in parts.most_common(8))
    return {
        "script": "package_size",
        "figures": [figure(
            "deployment.zip (chalice package --stage dev)", size / 1e6, "MB",
            budget="<= 10 MB", ok=size <= BUDGET_BYTES,
            note=(f"{size:,} bytes ({size / 2**20:.2f} MiB), {uncompressed / 1e6:.1f} MB unpacked; "
                  f"largest entries (MB compressed): {largest}"))],
        "notes": [],
    }


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
