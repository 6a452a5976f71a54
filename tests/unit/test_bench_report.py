"""Bench bookkeeping: the plan, ratios to raw CrypTen, growth exponents, the report."""

from __future__ import annotations

import json

import pytest

from secure_ml.bench.harness import SUITES, finish, plan
from secure_ml.bench.report import growth_exponent, sweep_series, write_outputs


def record(protocol, parties, wall, nbytes, accuracy, task="logreg_breast_cancer", epochs=1):
    return {
        "task": task, "protocol": protocol, "parties": parties, "wall_s": wall,
        "wall_min_s": wall, "wall_max_s": wall, "bytes": nbytes, "rounds": 10,
        "peak_rss_mb": 100.0, "accuracy": accuracy, "settings": {"epochs": epochs},
    }  # fmt: skip


def test_quick_plan_puts_raw_crypten_beside_every_secure_ml_run():
    steps = plan(SUITES["quick"])
    protocols = [(protocol, parties) for _, protocol, parties, _ in steps]
    expected = [("plaintext", 1)]
    expected += [(p, n) for n in (2, 3) for p in ("raw_crypten", "secure_ml")]
    assert protocols == expected
    full = plan(SUITES["full"])
    assert {p for _, p, _, _ in full if "sweep:parties" in p} == {
        f"secure_ml sweep:parties={n}" for n in (2, 3, 4, 5)
    }


def test_ratios_compare_only_runs_of_the_same_command_and_settings():
    records = [
        record("plaintext", 1, 0.1, 0, 0.95),
        record("raw_crypten", 2, 4.0, 400, 0.94),
        record("secure_ml", 2, 1.0, 100, 0.95),
        record("secure_ml", 3, 2.0, 300, 0.93),  # no raw 3-party run
        record("secure_ml sweep:batch_size=32", 2, 3.0, 300, 0.9, epochs=2),
    ]
    finish(records)
    ours = records[2]
    assert ours["ratio_to_raw_crypten"] == pytest.approx(0.25)
    assert ours["bytes_ratio_to_raw_crypten"] == pytest.approx(0.25)
    assert ours["error_vs_plain"] == pytest.approx(0.0)
    assert records[3]["ratio_to_raw_crypten"] is None
    assert records[4]["ratio_to_raw_crypten"] is None  # different settings
    assert records[1]["error_vs_plain"] == pytest.approx(0.01)


def test_growth_exponent_recovers_a_power_law():
    assert growth_exponent((2, 4, 8), (3.0, 12.0, 48.0)) == pytest.approx(2.0)
    assert growth_exponent((2,), (3.0,)) is None


def test_outputs_are_written(tmp_path):
    records = [record("plaintext", 1, 0.1, 0, 0.95), record("raw_crypten", 2, 4.0, 400, 0.94),
               record("secure_ml", 2, 1.0, 100, 0.95),
               record("secure_ml sweep:parties=2", 2, 1.0, 100, 0.95),
               record("secure_ml sweep:parties=4", 4, 4.0, 400, 0.95)]  # fmt: skip
    finish(records)
    write_outputs(records, tmp_path, suite="test")
    assert json.loads((tmp_path / "results.json").read_text())[2]["ratio_to_raw_crypten"] == 0.25
    report = (tmp_path / "report.md").read_text()
    assert "## logreg_breast_cancer" in report and "| parties | 2, 4 |" in report
    assert sweep_series(records) == {"parties": [(2.0, 1.0, 100.0), (4.0, 4.0, 400.0)]}
    assert (tmp_path / "cost.png").stat().st_size > 1000
    assert (tmp_path / "scaling.png").stat().st_size > 1000


def test_peer_records_join_the_suite_and_a_missing_folder_is_an_error(tmp_path):
    from secure_ml.bench.harness import Suite, peer_records
    from secure_ml.bench.tasks import Settings
    from secure_ml.errors import DataError

    suite = Suite("t", Settings(), ("logreg_breast_cancer",))
    peer = record("spu_semi2k", 2, 0.9, 5_000_000, 0.98)
    other = record("spu_semi2k", 2, 0.9, 5_000_000, 0.98, task="unlisted_task")
    (tmp_path / "spu-2.json").write_text(json.dumps(peer))
    (tmp_path / "x.json").write_text(json.dumps(other))
    joined = peer_records(tmp_path, suite)
    assert [r["protocol"] for r in joined] == ["spu_semi2k"]
    with pytest.raises(DataError, match="make bench-peers"):
        peer_records(tmp_path / "missing", suite)
