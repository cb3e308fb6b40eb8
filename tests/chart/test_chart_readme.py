"""The chart README's values table is generated from values.schema.json (scripts/
generate-chart-readme.py): CI fails when it is stale, and every value of values.yaml is
documented by a row (its own or a parent's)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import chartkit
import yaml

SCRIPT = chartkit.ROOT / "scripts" / "generate-chart-readme.py"


def generator():
    spec = importlib.util.spec_from_file_location("generate_chart_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(chart) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--chart", str(chart)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_readme_values_table_is_up_to_date():
    result = check(chartkit.CHART)
    assert result.returncode == 0, result.stderr


def test_a_schema_change_makes_the_readme_stale(tmp_path):
    chart = tmp_path / "wework"
    shutil.copytree(chartkit.CHART, chart)
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"]["ports"]["properties"]["grpc"]["description"] = "changed"
    (chart / "values.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    stale = check(chart)
    assert stale.returncode == 1 and "out of date" in stale.stderr, stale
    # Regenerating fixes it, and the new text is in the table.
    subprocess.run([sys.executable, str(SCRIPT), "--chart", str(chart)], check=True, timeout=60)
    assert check(chart).returncode == 0
    assert "| `ports.grpc` | integer | `50051` | changed |" in (chart / "README.md").read_text()


def leaves(value, path=()):
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    else:
        yield path


def test_every_value_is_documented():
    gen = generator()
    schema = json.loads((chartkit.CHART / "values.schema.json").read_text())
    values = yaml.safe_load((chartkit.CHART / "values.yaml").read_text())
    rows = [tuple(path) for path, _ in gen.rows(schema, [])]

    def covered(leaf: tuple[str, ...]) -> bool:
        return any(len(row) <= len(leaf) and all(r in (k, gen.ANY_KEY) for r, k in zip(row, leaf, strict=False))
                   for row in rows)

    undocumented = [".".join(leaf) for leaf in leaves(values) if not covered(leaf)]
    assert not undocumented, f"values without a description in values.schema.json: {undocumented}"
