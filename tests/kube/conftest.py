"""Fixtures for the Kubernetes platform: the strict API double with deploy/ applied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from double import DoubleThread
from kubehelp import kubectl_apply, manifests


@pytest.fixture
def double() -> Iterator[DoubleThread]:
    """A fresh API double with deploy/ applied in namespace "default"."""
    with DoubleThread() as running:
        kubectl_apply(running.url, "default", manifests())
        yield running
        pruned = running.call(lambda: list(running.api.pruned))
        assert pruned == [], f"fields the API server would have dropped: {pruned}"


@pytest.fixture
def bare_double() -> Iterator[DoubleThread]:
    """An API double without the CRDs (a cluster where skupper is not installed)."""
    with DoubleThread() as running:
        yield running
