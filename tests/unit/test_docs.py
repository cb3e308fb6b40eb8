"""Docs that cannot drift: every relative link and every repository path named in docs/ and
README.md exists, and every RPC of protos/wework/v1 appears in docs/client.md and docs/grpcurl.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])

# [text](target) and [text]: target; images too.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
# A path inside the repository, e.g. servers/wework/server/app.py or tests/e2e/ (in prose,
# backticks or code blocks). The top folders are the repository's.
TOP = "clients|servers|persistence|protos|charts|tests|bench|scripts|docs|\\.ci"
PATH = re.compile(rf"(?<![\w./-])((?:{TOP})/[\w./-]*[\w/])")
TOP_FILES = re.compile(r"`((?:pyproject\.toml|constraints\.txt|Makefile|Dockerfile|buf\.yaml|README\.md))`")
RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(", re.MULTILINE)


def relative(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def links(doc: Path) -> list[str]:
    text = doc.read_text()
    found = [a or b for a, b in LINK.findall(text)]
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^<", t)]


def paths(doc: Path) -> list[str]:
    text = doc.read_text()
    named = PATH.findall(text) + TOP_FILES.findall(text)
    # Placeholders and globs name no single file (`bench/<name>.py`, `docs/decisions/00*`).
    return [p.rstrip(".") for p in named if not re.search(r"[<>*{}]|\.\.\.", p)]


def rpcs() -> list[str]:
    """wework.v1.Service/Method of every rpc in the .proto sources."""
    found = []
    for proto in sorted((REPO / "protos" / "wework" / "v1").glob("*.proto")):
        text = re.sub(r"//.*", "", proto.read_text())
        for service, body in re.findall(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL):
            found += [f"wework.v1.{service}/{method}" for method in RPC.findall(body)]
    return found


def test_the_checks_see_the_docs() -> None:
    assert len(DOCS) > 20 and len(rpcs()) > 60
    assert "docs/client.md" in {t for doc in DOCS for t in links(doc)} | {"docs/client.md"}
    assert "servers/wework/server/app.py" in paths(REPO / "docs" / "architecture.md")


@pytest.mark.parametrize("doc", DOCS, ids=relative)
def test_relative_links_exist(doc: Path) -> None:
    missing = [t for t in links(doc) if not (doc.parent / t.split("#")[0]).exists()]
    assert not missing, f"{relative(doc)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=relative)
def test_named_paths_exist(doc: Path) -> None:
    missing = sorted({p for p in paths(doc) if not (REPO / p).exists()})
    assert not missing, f"{relative(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", ["docs/client.md", "docs/grpcurl.md"])
def test_every_rpc_is_documented(doc: str) -> None:
    text = (REPO / doc).read_text()
    if doc == "docs/client.md":  # the generated table names them without the package
        text = text.replace("`", " `wework.v1.")
    missing = [rpc for rpc in rpcs() if rpc not in text]
    assert not missing, f"{doc} does not mention {missing}"
