"""Fixtures of the chart tests: a real helm 3 (installed by scripts/install-helm.sh) and the
rendered value sets, rendered once per session."""

from __future__ import annotations

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
