"""Fixtures of the chart tests: a real helm 3 (installed by scripts/install-helm.sh) and the
rendered value sets, rendered once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import chartkit
import pytest


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> chartkit.Helm:
    return chartkit.Helm(chartkit.install_helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rendered(helm):
    """name -> the objects `helm template` renders for that value set (cached per session)."""
    cache: dict[str, list[dict]] = {}

    def render(name: str) -> list[dict]:
        if name not in cache:
            cache[name] = helm.template(chartkit.values_files(name))
        return cache[name]

    return render


# The dashboard test starts wework-server through the e2e harness (tests/e2e/serverproc.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
