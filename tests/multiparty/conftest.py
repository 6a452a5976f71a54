"""Fixtures for multiparty tests (helpers live in mpkit.py)."""

from __future__ import annotations

import pytest
from mpkit import WORLDS


@pytest.fixture(params=sorted(WORLDS))
def world(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``world`` runs under 2PC, 3PC and TTP."""
    return request.param
