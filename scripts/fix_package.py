"""Post-process `chalice package` output: chalice 1.34 names the API handler's log group after
``${ApiHandler}`` while the function resource is ``APIHandler`` (cfn-lint E1019; the stack would
not deploy). Rewrite that one reference so stage-level ``log_retention_in_days`` works.

    python scripts/fix_package.py out/sam.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

WRONG, RIGHT = "/aws/lambda/${ApiHandler}", "/aws/lambda/${APIHandler}"


def fix(path: Path) -> bool:
    text = path.read_text()
    if WRONG not in text:
        return False
    path.write_text(text.replace(WRONG, RIGHT))
    return True


if __name__ == "__main__":
    for name in sys.argv[1:]:
        fix(Path(name))
