"""dp.stats through `secure-ml run`: released statistics inside their intervals, and a
release refused on every party once an owner's budget ledger cannot pay for it."""

from __future__ import annotations

import json

import pytest
from testkit import REPO, secure_ml_run

from secure_ml.errors import EXIT_CODES, PrivacyBudgetExceeded

SPEC = REPO / "protocols" / "dp_stats_breast_cancer.toml"
#: a generous budget, so that the noise is small next to the statistics
EPSILON = "dp.epsilon=50"


def run(out, ledgers, *overrides):
    sets = [EPSILON, f"dp.ledger={ledgers}/{{party}}.json", *overrides]
    return secure_ml_run(SPEC, out, sets, timeout=120)


def inside(value, interval):
    return interval[0] <= value <= interval[1]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_stats_are_released_once_then_the_budget_refuses(tmp_path):
    ledgers = tmp_path / "ledgers"
    done = run(tmp_path / "first", ledgers)
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((tmp_path / "first" / "result.json").read_text())
    privacy = result["privacy"]
    assert privacy["epsilon"] == 50 and privacy["delta"] == 1e-5
    assert privacy["mechanism"] == "gaussian" and privacy["accountant"] == "rdp"
    assert privacy["collusion_threshold"] == 2 and "every receiver" in privacy["against"]
    assert len(privacy["per_query"]) == 9  # 3 columns x (sum, sum of squares, histogram)
    assert privacy["noise_multiplier"] > 0
    assert len(result["revealed_to"]) == 9
    assert all(to == ["hospital_c"] for to in result["revealed_to"].values())
    metrics = result["metrics"]
    checks = []
    for column, stats in metrics["stats"].items():
        reference = metrics["plaintext_stats"][column]
        checks += [inside(reference[q], stats[q]["ci95"]) for q in ("mean", "variance")]
        intervals = zip(reference["histogram"], stats["histogram"]["ci95"], strict=True)
        checks += [inside(count, interval) for count, interval in intervals]
    # 36 intervals at >= 95 % each: 9 or more misses has probability 5e-5 (4 or more
    # would be 10 %); the coverage rate itself is tested in test_stats_coverage.py
    assert len(checks) == 36 and sum(checks) >= 28, metrics
    # each owner's ledger was charged for its own column's releases only
    for owner in ("hospital_a", "hospital_b", "hospital_c"):
        ledger = json.loads((ledgers / f"{owner}.json").read_text())
        assert len(ledger["entries"]) == 3 and ledger["spent"]["epsilon"] <= 50

    # one release that alone would take hospital_a's whole budget: refused before anything opens
    refused = run(
        tmp_path / "second", ledgers, 'stats.columns=["mean radius"]', "stats.lower=0",
        "stats.upper=30", 'stats.queries=["histogram"]',
    )  # fmt: skip
    assert refused.returncode == EXIT_CODES[PrivacyBudgetExceeded], refused.stderr
    assert "PrivacyBudgetExceeded" in refused.stderr and "left ε=" in refused.stderr
    assert "hospital_a" in refused.stderr
    assert not (tmp_path / "second" / "result.json").exists()
    assert list((tmp_path / "second").rglob("result-*.json")) == []
    assert len(json.loads((ledgers / "hospital_a.json").read_text())["entries"]) == 3
