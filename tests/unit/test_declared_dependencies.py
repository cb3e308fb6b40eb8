"""Every third-party module the code imports is provided by a distribution pyproject.toml declares
(issue 22): an import that only works because something else happens to pull its package in
breaks on the next upgrade, or for a user who installs only what we declare.

The imports are read with `ast` (nothing is executed), from every Python file of the source roots,
the benchmarks, the scripts and the tests; imports nested in functions and `try` blocks count too.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["clients", "servers", "persistence", "bench", "scripts", "tests"]
GENERATED = ROOT / "clients" / "wework" / "v1"  # checked too: it imports grpc and protobuf


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: Path = ROOT / "pyproject.toml") -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    # "name[extra]>=1; marker" -> name
    return {normalize(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


def python_files(scanned: list[str] = SCANNED) -> Iterator[Path]:
    for top in scanned:
        for path in (ROOT / top).rglob("*.py"):
            if ".venv" not in path.parts and "__pycache__" not in path.parts:
                yield path


def first_party() -> set[str]:
    """Our own top-level names: the `wework` namespace, and the modules and packages that tests,
    benchmarks and scripts import from beside them (conftest puts tests/ on sys.path)."""
    names = {"wework", "conftest"}
    for top in ("bench", "scripts", "tests"):
        for path in (ROOT / top).rglob("*"):
            if "__pycache__" in path.parts:
                continue
            if path.suffix == ".py":
                names.add(path.stem)
            elif path.is_dir():
                names.add(path.name)
    return names


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


@cache
def packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


@cache
def distributions_by_location() -> dict[Path, set[str]]:
    """Installed module file, and folder, -> the distributions that put files there: for the
    namespace packages (google.*, opentelemetry.*) that several distributions share."""
    owners: dict[Path, set[str]] = {}
    for dist in md.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            if file.suffix in (".py", ".so", ".pyd"):
                path = Path(dist.locate_file(file)).resolve()
                owners.setdefault(path, set()).add(name)
                owners.setdefault(path.parent, set()).add(name)
    return owners


def providers(module: str) -> set[str]:
    """The distributions that may provide `module` (normalized names)."""
    top = module.split(".")[0]
    candidates = {normalize(c) for c in packages_distributions().get(top, ())}
    if len(candidates) <= 1:
        return candidates
    # A namespace shared by several distributions: find the ones that ship this module (or the
    # deepest package above it: `from a.b import c` may name a function c).
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        if spec.origin not in (None, "namespace"):
            locations.append(spec.origin)
        found: set[str] = set()
        for location in locations:
            found |= distributions_by_location().get(Path(location).resolve(), set())
        if found:
            return found
    return candidates


def undeclared(scanned: list[str], allowed: set[str]) -> list[str]:
    ours = first_party()
    missing: list[str] = []
    for path in python_files(scanned):
        for module, line in imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in ours or top == "__future__":
                continue
            found = providers(module)
            if not found & allowed:
                where = f"{path.relative_to(ROOT)}:{line}"
                missing.append(f"{where}: import {module} (from {sorted(found) or 'no installed distribution'})")
    return missing


def test_every_third_party_import_is_declared():
    missing = undeclared(SCANNED, declared())
    assert not missing, "undeclared imports (add them to pyproject.toml and constraints.txt):\n" + "\n".join(
        missing)


def test_the_client_distribution_declares_what_the_client_imports():
    """wework-client (clients/pyproject.toml) is installed alone: the facade and the generated
    code may import only what it declares."""
    missing = undeclared(["clients"], declared(ROOT / "clients" / "pyproject.toml"))
    assert not missing, "imports the client distribution does not declare:\n" + "\n".join(missing)


def test_the_check_sees_an_undeclared_import(tmp_path):
    """The walk must see imports wherever they are, and tell a declared distribution from an
    installed one that is not (hypothesis's `sortedcontainers`, grpcio-status's `google.rpc`)."""
    source = tmp_path / "sample.py"
    source.write_text("def f():\n    try:\n        import sortedcontainers\n    except ImportError:\n"
                      "        pass\nfrom google.rpc import status_pb2\nfrom google.protobuf import message\n")
    modules = {m for m, _ in imported_modules(source)}
    assert modules == {"sortedcontainers", "google.rpc", "google.protobuf"}
    assert providers("sortedcontainers") == {"sortedcontainers"}
    assert providers("google.rpc") == {"googleapis-common-protos"}
    assert providers("google.protobuf") == {"protobuf"}
    assert "sortedcontainers" not in declared()
