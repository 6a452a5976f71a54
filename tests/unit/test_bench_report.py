"""Bench bookkeeping: the plan, ratios to raw CrypTen and all-on, growth exponents, the report."""

from __future__ import annotations

import json

import pytest

from secure_ml.bench.harness import OPTIMISATIONS, SUITES, ablation_switches, finish, plan
from secure_ml.bench.report import growth_exponent, markdown, sweep_series, write_outputs


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
    raws = ("raw_crypten", "raw_crypten_closed_form")
    expected += [(p, 2) for p in (*raws, "secure_ml")]  # CI: 2 parties only
    expected += [("secure_ml ablation:none", 2)]  # and the before only
    assert protocols == expected
    full = plan(SUITES["full"])
    assert {p for _, p, _, _ in full if "sweep:parties" in p} == {
        f"secure_ml sweep:parties={n}" for n in (2, 3, 4, 5)
    }
    ablations = [(t, p, n) for t, p, n, _ in full if "ablation:" in p]
    variants = ("none", *(f"-{name}" for name in OPTIMISATIONS))
    assert sorted(ablations) == sorted(
        ("logreg_breast_cancer", f"secure_ml ablation:{v}", n) for v in variants for n in (2, 3)
    )


def test_ablation_names_map_to_mpc_switches():
    assert ablation_switches("secure_ml") is None
    assert ablation_switches("secure_ml ablation:none") == {
        "p2p_open": False, "batch_openings": False, "precompute": False, "fast_config": False,
    }  # fmt: skip
    assert ablation_switches("secure_ml ablation:-precompute") == {
        "p2p_open": True, "batch_openings": True, "precompute": False, "fast_config": True,
    }  # fmt: skip
    with pytest.raises(ValueError, match="-p2p_open"):
        ablation_switches("secure_ml ablation:-warp_drive")


def test_ratios_compare_only_runs_of_the_same_command_and_settings():
    records = [
        record("plaintext", 1, 0.1, 0, 0.95),
        record("raw_crypten", 2, 4.0, 400, 0.94),
        record("secure_ml", 2, 1.0, 100, 0.95),
        record("secure_ml", 3, 2.0, 300, 0.93),  # no raw 3-party run
        record("secure_ml sweep:batch_size=32", 2, 3.0, 300, 0.9, epochs=2),
        record("raw_crypten_closed_form", 2, 2.0, 200, 0.95),
    ]
    finish(records)
    ours = records[2]
    assert ours["ratio_to_raw_crypten"] == pytest.approx(0.25)
    assert ours["bytes_ratio_to_raw_crypten"] == pytest.approx(0.25)
    # against the baseline with our algorithm: what the engine alone buys
    assert ours["ratio_to_raw_crypten_closed_form"] == pytest.approx(0.5)
    assert ours["bytes_ratio_to_raw_crypten_closed_form"] == pytest.approx(0.5)
    assert ours["error_vs_plain"] == pytest.approx(0.0)
    assert records[3]["ratio_to_raw_crypten"] is None
    assert records[3]["ratio_to_raw_crypten_closed_form"] is None
    assert records[4]["ratio_to_raw_crypten"] is None  # different settings
    assert records[4]["ratio_to_raw_crypten_closed_form"] is None
    assert records[5]["ratio_to_raw_crypten"] is None  # baselines get no ratio
    assert records[1]["error_vs_plain"] == pytest.approx(0.01)


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def ablation_records():
    """Synthetic 2-party before/after records (3 parties has no all-on record)."""
    return [
        record("plaintext", 1, 0.1, 0, 0.95),
        record("raw_crypten", 2, 8.0, 800, 0.94),
        record("raw_crypten_closed_form", 2, 4.0, 400, 0.95),
        record("secure_ml", 2, 2.0, 100, 0.95),
        record("secure_ml ablation:none", 2, 6.0, 400, 0.95),
        record("secure_ml ablation:-p2p_open", 2, 3.0, 200, 0.95),
        record("secure_ml ablation:-precompute", 2, 4.0, 100, 0.95),
        record("secure_ml ablation:none", 3, 9.0, 900, 0.93),
        record("secure_ml sweep:parties=2", 2, 2.0, 100, 0.95),
    ]


def test_ratio_to_all_on_divides_by_the_all_on_run_of_the_same_task_and_parties():
    records = ablation_records()
    finish(records)
    by_name = {(r["protocol"], r["parties"]): r for r in records}
    assert by_name[("secure_ml", 2)]["ratio_to_all_on"] == pytest.approx(1.0)
    assert by_name[("secure_ml ablation:none", 2)]["ratio_to_all_on"] == pytest.approx(3.0)
    assert by_name[("secure_ml ablation:-p2p_open", 2)]["ratio_to_all_on"] == pytest.approx(1.5)
    assert by_name[("secure_ml ablation:none", 2)]["ratio_to_raw_crypten"] == pytest.approx(0.75)
    assert by_name[("secure_ml ablation:none", 3)]["ratio_to_all_on"] is None  # no all-on run
    for other in ("plaintext", "raw_crypten", "secure_ml sweep:parties=2"):
        assert next(r for r in records if r["protocol"] == other)["ratio_to_all_on"] is None
    assert by_name[("raw_crypten", 2)]["mpc"] is None


def test_report_has_a_before_after_table_per_party_count_and_keeps_ablations_apart():
    records = ablation_records()
    finish(records)
    report = markdown(records, suite="test")
    section = report.split("## Optimisations (before/after)", 1)[1].split("## Scaling")[0]
    assert "what X buys" in section
    two = section.split("### logreg_breast_cancer, 2 parties", 1)[1].split("###")[0]
    rows = [cells(line) for line in two.splitlines() if line.startswith("| all")]
    assert [row[0] for row in rows] == ["all off", "all but p2p_open", "all but precompute",
                                        "all on"]  # fmt: skip
    # after the wall time: rounds, MB, accuracy, ratios to both raw baselines, to all on
    assert rows[0][2:] == ["10", "0.0004", "0.95", "0.75", "1.5", "3"]
    assert rows[-1][-1] == "1"
    assert "### logreg_breast_cancer, 3 parties" in section
    task_table = report.split("## logreg_breast_cancer", 1)[1].split("## Optimisations")[0]
    assert "ablation" not in task_table  # only in their own section
    ours = next(cells(line) for line in task_table.splitlines() if line.startswith("| secure_ml |"))
    assert ours[-2:] == ["0.25", "0.5"]  # ratio to raw, ratio to closed-form raw


def test_growth_exponent_recovers_a_power_law():
    assert growth_exponent((2, 4, 8), (3.0, 12.0, 48.0)) == pytest.approx(2.0)
    assert growth_exponent((2,), (3.0,)) is None


def test_outputs_are_written(tmp_path):
    records = [record("plaintext", 1, 0.1, 0, 0.95), record("raw_crypten", 2, 4.0, 400, 0.94),
               record("secure_ml", 2, 1.0, 100, 0.95),
               record("secure_ml sweep:parties=2", 2, 1.0, 100, 0.95),
               record("secure_ml sweep:parties=4", 4, 4.0, 400, 0.95),
               record("secure_ml ablation:none", 2, 3.0, 300, 0.95)]  # fmt: skip
    finish(records)
    write_outputs(records, tmp_path, suite="test")
    assert json.loads((tmp_path / "results.json").read_text())[2]["ratio_to_raw_crypten"] == 0.25
    report = (tmp_path / "report.md").read_text()
    assert "## logreg_breast_cancer" in report and "| parties | 2, 4 |" in report
    assert "## Optimisations (before/after)" in report
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
