"""The quick start's data stack (docs/DEPLOY.md): ``infra/resources.yaml`` without what watches the
functions Chalice generates.

The packaged template (``make package``) merges ``infra/resources.yaml`` into Chalice's, so some of
its alarms and its dashboard refer to ``APIHandler`` and ``DeliverBackchannelLogout``. With
``chalice deploy`` those functions are not stack resources, and CloudFormation refuses a template
that refers to a resource it does not define. This writes the template without every resource
(and output) that refers, directly or through another, to a name the file does not define: the
table, queues, secret, alarm topic and the alarms on them stay.

    .venv/bin/python scripts/data_template.py out/data.yaml
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "resources.yaml"
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def names_used(value: Any) -> set[str]:
    """The logical names a template fragment refers to (Ref, Fn::GetAtt, Fn::Sub variables)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= names_used(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                found.add(target)
            elif key == "Fn::Sub":
                text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                found |= {n.split(".", 1)[0] for n in _SUB.findall(text) if n not in variables}
                found |= names_used(variables)
            else:
                found |= names_used(arg)
    return found


def data_template(template: dict) -> dict:
    """``template`` without the resources and outputs that need names it does not define."""
    out = dict(template)
    resources = dict(template["Resources"])
    known = set(template.get("Parameters") or {})
    while True:
        defined = known | set(resources)
        dangling = {
            logical_id for logical_id, resource in resources.items()
            if any(not n.startswith("AWS::") and n not in defined for n in names_used(resource))
        }
        if not dangling:
            break
        for logical_id in dangling:
            del resources[logical_id]
    out["Resources"] = resources
    defined = known | set(resources)
    out["Outputs"] = {
        key: output for key, output in (template.get("Outputs") or {}).items()
        if all(n.startswith("AWS::") or n in defined for n in names_used(output))
    }
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    template = yaml.safe_load(TEMPLATE_PATH.read_text())
    target = Path(argv[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data_template(template), sort_keys=False, width=100))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
