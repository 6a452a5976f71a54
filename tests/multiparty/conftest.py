"""Fixtures for multiparty tests (helpers live in mpkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpkit import WORLDS

from secure_ml.keys import init_keys


@pytest.fixture(params=sorted(WORLDS))
def world(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``world`` runs under 2PC, 3PC and TTP."""
    return request.param


@pytest.fixture(scope="session")
def party_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with a key pair for p0, p1, p2 and the dealer, made for this test run."""
    folder = tmp_path_factory.mktemp("party-keys")
    for name in ("p0", "p1", "p2", "dealer"):
        init_keys(name, folder)
    return folder
