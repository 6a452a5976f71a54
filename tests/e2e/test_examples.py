"""The documented Python API example runs and gets the pooled answer."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from testkit import REPO


def run_example(script: str) -> tuple[str, str]:
    """The two lines an example prints: its results, and the plaintext comparison."""
    out = subprocess.run(
        [sys.executable, str(REPO / "protocols" / script)],
        capture_output=True, text=True, timeout=170, check=True,
    )  # fmt: skip
    first, second = out.stdout.strip().splitlines()
    return first, second


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_secure_mean_example_matches_the_pooled_mean():
    first, second = run_example("python_secure_mean.py")
    results = ast.literal_eval(first)  # the dict the example prints
    assert results["clinic_a"] is None and results["clinic_b"] is None
    pooled = float(second.rsplit(":", 1)[1])
    assert abs(results["registry"] - pooled) < 1e-2


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_input_parties_example_totals_the_clinics_that_delivered():
    first, second = run_example("python_input_parties.py")
    results = ast.literal_eval(first)
    # clinic_c failed and was dropped; clinics a and b return None; only the office opens
    assert sorted(results) == ["clinic_a", "clinic_b", "office", "university"]
    assert results["university"] is None and results["clinic_a"] is None
    expected = ast.literal_eval(second.rsplit(":", 1)[1].strip())
    assert [round(v) for v in results["office"]] == [round(v) for v in expected]
