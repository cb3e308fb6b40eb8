"""The settings reference of docs/configuration.md, generated from the settings model.

One row per setting: its dotted name, its environment variable, its default (from the model)
and its meaning. The meaning is kept from the document when it has one (hand-written, with
links), else taken from the comment above the field in the model's source. Regenerate with

    python -m wework.server.settings_reference docs/configuration.md

and `--check` (the unit test's way) exits 1 when the document and the model disagree.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

START = "<!-- settings-reference:start (generated: python -m wework.server.settings_reference) -->"
END = "<!-- settings-reference:end -->"
HEADER = "| setting | env | default | meaning |\n|---|---|---|---|"


@dataclass(frozen=True)
class SettingInfo:
    name: str  # dotted, e.g. "server.host"
    env: str  # e.g. "WEWORK_SERVER__HOST"
    default: str  # as shown in the document
    comment: str  # from the model's source, "" when none


def env_name(name: str) -> str:
    """The environment variable of a dotted setting name (prefix WEWORK_, nesting with __)."""
    return "WEWORK_" + name.replace(".", "__").upper()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field typed `Model` or `Model | None`, else None (a leaf)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return None


@cache
def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment lines right above its declaration (or after it on its line)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        trailing = lines[node.lineno - 1].partition("  # ")[2].strip()
        text = " ".join(above + ([trailing] if trailing else []))
        if text.startswith("----"):  # a section marker, not a description
            text = ""
        out[node.target.id] = text
    return out


def _format(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, list | dict):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value] \
            if isinstance(value, list) else value
        return f"`{json.dumps(value)}`"
    if isinstance(value, str | Path):
        return f"`{value}`" if str(value) else '`""`'
    return str(value)


def iter_settings(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[SettingInfo]:
    """Every leaf setting of `model` (default: the server's Settings), depth first."""
    if model is None:
        from wework.server.settings import Settings

        model = Settings
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from iter_settings(nested, dotted + ".")
            continue
        default = field.get_default(call_default_factory=True)
        yield SettingInfo(dotted, env_name(dotted), _format(default), _comments(model).get(name, ""))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def parse_meanings(table: str) -> dict[str, str]:
    """Setting name -> meaning (as written, pipes escaped), from the rows of a table. A row may
    also name several settings the way the hand-written table did (`a.b` / `c` / `a.d`: names
    without a dot share the first one's parent), and later rows win: to bring in a meaning
    written elsewhere (e.g. when merging), add its row at the end of the block and regenerate."""
    meanings: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split("/")]
        parent = names[0].rpartition(".")[0]
        for name in names:
            full = name if "." in name or not parent else f"{parent}.{name}"
            meanings[full] = cells[3]
    return meanings


def render_table(meanings: dict[str, str]) -> str:
    rows = [HEADER]
    for s in iter_settings():
        meaning = meanings.get(s.name) or _cell(s.comment)
        rows.append(f"| `{s.name}` | `{s.env}` | {_cell(s.default)} | {meaning} |")
    return "\n".join(rows)


def regenerate(document: str) -> str:
    """`document` with its settings table rebuilt from the model (meanings kept)."""
    head, found_start, rest = document.partition(START)
    table, found_end, tail = rest.partition(END)
    if not found_start or not found_end:
        raise ValueError(f"the document has no {START!r} ... {END!r} block")
    return f"{head}{START}\n{render_table(parse_meanings(table))}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wework.server.settings_reference",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("document", type=Path, help="docs/configuration.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is not up to date")
    args = parser.parse_args(argv)
    current = args.document.read_text()
    wanted = regenerate(current)
    if args.check:
        if wanted != current:
            print(f"{args.document} does not match the settings model; run "
                  f"python -m wework.server.settings_reference {args.document}", file=sys.stderr)
            return 1
        return 0
    args.document.write_text(wanted)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
