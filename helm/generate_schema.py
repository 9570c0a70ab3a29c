"""values.schema.yaml (with descriptions) is the single source: write values.schema.json
and the values reference (docs/helm-values.md).

    python helm/generate_schema.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).with_name("hubforge")
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "helm-values.md"


def render() -> str:
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def _rows(schema: dict, defaults: object, path: str) -> list[str]:
    rows = []
    for key, sub in schema.get("properties", {}).items():
        name = f"{path}.{key}" if path else key
        value = defaults.get(key) if isinstance(defaults, dict) else None
        kind = sub.get("type", "")
        if "enum" in sub:
            kind += " (" + " \\| ".join(str(e) for e in sub["enum"]) + ")"
        shown = "" if isinstance(value, dict) or value is None else f"`{json.dumps(value)}`"
        text = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {shown} | {text} |")
        if sub.get("properties"):
            rows += _rows(sub, value, name)
    return rows


def reference() -> str:
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    head = [
        "# Helm values reference",
        "",
        "Generated from `helm/hubforge/values.schema.yaml` by `python helm/generate_schema.py`;"
        " do not edit by hand. Unknown keys fail in helm (`additionalProperties: false`).",
        "",
        "| value | type | default | what it does |",
        "|---|---|---|---|",
    ]
    return "\n".join(head + _rows(schema, defaults, "")) + "\n"


def main() -> int:
    outputs = {CHART / "values.schema.json": render(), REFERENCE: reference()}
    if "--check" in sys.argv:
        stale = [str(p) for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"stale: {stale}; run python helm/generate_schema.py", file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
