"""Bench bookkeeping: the plan, ratios to raw CrypTen, all-on and the plain channel,
growth exponents, the report."""

from __future__ import annotations

import json

import pytest

from secure_ml.bench.harness import (
    OPTIMISATIONS,
    SUITES,
    ablation_switches,
    finish,
    plan,
    runner_for,
    together,
)
from secure_ml.bench.names import (
    ENCRYPTED,
    HE_BATCHED,
    HE_FULL,
    HE_NAIVE,
    HE_PER_SAMPLE,
    HE_RATIO,
    HE_TASK,
    NO_DP,
    NON_DP_RATIO,
    PLAIN_CHANNEL_RATIO,
)
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
    expected += [("secure_ml encrypted", 2)]  # the channel's cost: one run more
    # DP: central DP, then 3 compute parties at each collusion threshold, whatever `parties`
    expected += [("plaintext", 1), ("secure_ml dp:t=1", 3), ("secure_ml dp:t=2", 3)]
    # DP-SGD: Opacus, then DP-SGD on shares and the same run without [dp]
    expected += [("plaintext", 1), ("secure_ml", 2), (NO_DP, 2)]
    # HE inference: plaintext, batched HE with its naive baseline and the full-slots
    # evaluation, HE per sample, mpc.infer
    expected += [("plaintext", 1), (HE_BATCHED, 2), (HE_NAIVE, 1), (HE_FULL, 1),
                 (HE_PER_SAMPLE, 2), ("secure_ml", 2)]  # fmt: skip
    expected += [("secure_ml ablation:none", 2)]  # and the before only
    assert protocols == expected
    assert [t for t, _, _, _ in steps[11:17]] == [HE_TASK] * 6
    assert [t for t, _, _, _ in steps[5:8]] == ["dp_stats_breast_cancer"] * 3
    assert [t for t, _, _, _ in steps[8:11]] == ["dp_logreg_breast_cancer"] * 3
    full = plan(SUITES["full"])
    assert {p for _, p, _, _ in full if "sweep:parties" in p} == {
        f"secure_ml sweep:parties={n}" for n in (2, 3, 4, 5)
    }
    ablations = [(t, p, n) for t, p, n, _ in full if "ablation:" in p]
    variants = ("none", *(f"-{name}" for name in OPTIMISATIONS))
    assert sorted(ablations) == sorted(
        ("logreg_breast_cancer", f"secure_ml ablation:{v}", n) for v in variants for n in (2, 3)
    )
    # the encrypted channel: on the headline task only, beside each plain secure_ml record
    encrypted = [(t, n) for t, p, n, _ in full if p == ENCRYPTED]
    assert encrypted == [("logreg_breast_cancer", 2), ("logreg_breast_cancer", 3)]
    # DP-SGD's twin without [dp]: beside each DP-SGD run, with the suite's party counts
    no_dp = [(t, n) for t, p, n, _ in full if p == NO_DP]
    assert no_dp == [("dp_logreg_breast_cancer", 2), ("dp_logreg_breast_cancer", 3)]


def test_dp_sgd_task_is_the_headline_with_dp_and_its_twin_drops_dp(tmp_path):
    from secure_ml.bench.dp_sgd_rows import without_dp
    from secure_ml.bench.tasks import TASKS

    settings = SUITES["full"].settings_for("dp_logreg_breast_cancer")
    assert settings == SUITES["full"].settings_for("logreg_breast_cancer")
    raw = TASKS["dp_logreg_breast_cancer"].make_spec(3, settings, tmp_path)
    headline = TASKS["logreg_breast_cancer"].make_spec(3, settings, tmp_path)
    assert raw["dp"] == {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0,
                         "ledger": str(tmp_path / "ledgers" / "{party}.json")}  # fmt: skip
    assert without_dp(raw) == headline  # the same schedule, seed and parties
    assert runner_for(NO_DP).keywords == {"no_dp": True}


def test_encrypted_steps_are_measured_with_their_plain_run():
    for suite in SUITES.values():
        groups = together(plan(suite))
        assert sum(map(len, groups)) == len(plan(suite))
        pairs = [g for g in groups if len(g) > 1]
        expected = [["secure_ml", ENCRYPTED]] * len(suite.parties)
        expected += [["secure_ml", NO_DP]] * len(suite.parties)  # DP-SGD and its twin
        expected += [[HE_BATCHED, HE_NAIVE, HE_FULL]]  # the in-process HE rows join batched
        assert sorted([p for _, p, _, _ in g] for g in pairs) == sorted(expected)
        for (task, p, n, settings), *others in pairs:
            for task2, p2, n2, settings2 in others:
                assert (task, settings) == (task2, settings2)
                assert n == n2 or (p, n, p2, n2) in ((HE_BATCHED, 2, HE_NAIVE, 1),
                                                     (HE_BATCHED, 2, HE_FULL, 1))  # fmt: skip


def test_encrypted_runner_turns_encryption_on_and_makes_keys_in_scratch(tmp_path):
    from secure_ml.bench.harness import _make_keys
    from secure_ml.bench.tasks import TASKS, Settings

    runner = runner_for(ENCRYPTED)
    assert runner.keywords == {"transport": {"encryption": "on"}}
    raw = TASKS["logreg_breast_cancer"].make_spec(3, Settings(), tmp_path)
    folder = _make_keys(raw, tmp_path / "keys")
    names = {"party0", "party1", "party2", "dealer"}
    assert {p.name for p in folder.glob("*.pub")} == {f"{n}.pub" for n in names}
    assert {p.name for p in folder.glob("*.key")} == {f"{n}.key" for n in names}


def test_interleaved_repeats_alternate_the_order():
    from secure_ml.bench.harness import _measure_together

    calls = []

    def runner(name):
        def run(task, settings, parties, scratch):
            calls.append(name)
            return {"wall_s": float(len(calls))}

        return run

    plain, sealed = _measure_together([runner("a"), runner("b")], None, None, 2, 4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # drift falls on both
    assert (plain["wall_min_s"], plain["wall_max_s"], plain["repeats"]) == (1.0, 8.0, 4)
    assert sealed["wall_s"] == pytest.approx(4.5)  # the median of 2, 3, 6, 7


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
    assert all(r[PLAIN_CHANNEL_RATIO] is None for r in records)  # no encrypted run


def test_ratio_to_plain_channel_divides_by_the_plain_run_of_the_same_task_and_parties():
    records = [
        record("raw_crypten", 2, 4.0, 400, 0.94),
        record("secure_ml", 2, 2.0, 100, 0.95),
        record(ENCRYPTED, 2, 2.2, 100, 0.95),
        record(ENCRYPTED, 3, 3.0, 300, 0.95),  # no plain 3-party run
        record(ENCRYPTED, 2, 3.0, 100, 0.95, task="digits_mlp_train"),  # nor on this task
        record("secure_ml ablation:none", 2, 6.0, 400, 0.95),
    ]
    finish(records)
    assert records[2][PLAIN_CHANNEL_RATIO] == pytest.approx(1.1)
    assert records[2]["ratio_to_raw_crypten"] == pytest.approx(0.55)  # a secure_ml run too
    assert records[2]["ratio_to_all_on"] is None  # not an ablation
    for r in (records[0], records[1], records[3], records[4], records[5]):
        assert r[PLAIN_CHANNEL_RATIO] is None


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
        record(ENCRYPTED, 2, 2.5, 100, 0.95),
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
    # ratio to raw, ratio to closed-form raw, ratio to plain channel (none: it is the plain one)
    assert ours[-3:] == ["0.25", "0.5", "-"]
    sealed = next(cells(line) for line in task_table.splitlines() if ENCRYPTED in line)
    assert sealed[-3:] == ["0.312", "0.625", "1.25"]
    assert "ratio to plain channel" in task_table and "AES-256-GCM" in report


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


def dp_result(t, n_parties=3, accounted=(10.0, 2.0)):
    """A dp.stats result.json with two releases of one column (the bench's first column)."""
    from secure_ml.bench.dp_rows import DP_COLUMNS

    ratio = (n_parties / (n_parties - t)) ** 0.5
    per_query = [{"release": f"release {i}", "accounted_sigma": a, "total_sigma": a * ratio,
                  "collusion_threshold": t} for i, a in enumerate(accounted)]  # fmt: skip
    # every column's mean off by a tenth of its width; each count off by 5.69 of 569 rows
    stats = {name: {"mean": {"value": low + 0.6 * (high - low)},
                    "histogram": {"counts": [10.0 + 5.69, 20.0 - 5.69]}}
             for name, (low, high) in DP_COLUMNS.items()}  # fmt: skip
    exact = {name: {"mean": low + 0.5 * (high - low), "histogram": [10, 20]}
             for name, (low, high) in DP_COLUMNS.items()}  # fmt: skip
    return {"privacy": {"per_query": per_query},
            "metrics": {"n": 569, "stats": stats, "plaintext_stats": exact}}  # fmt: skip


def test_dp_fields_from_a_result():
    from secure_ml.bench.dp_rows import from_result

    fields = from_result(dp_result(1))
    assert fields["noise_releases"] == ["release 0", "release 1"]
    assert fields["noise_sigma_accounted"] == [10.0, 2.0]
    assert fields["noise_sigma_total"] == pytest.approx([10 * 1.5**0.5, 2 * 1.5**0.5])
    assert fields["noise_ratio_to_central"] == pytest.approx(1.5**0.5)
    assert fields["collusion_threshold"] == 1
    assert fields["mean_error_rel_width"] == pytest.approx(0.1)  # the same for every unit
    assert fields["histogram_error_rel_rows"] == pytest.approx(0.01)


def dp_records():
    from secure_ml.bench.dp_rows import from_result

    task = "dp_stats_breast_cancer"
    records = [record("plaintext", 1, 0.01, 0, None, task=task)]
    records[0].update(from_result(dp_result(0, n_parties=1)))
    for t in (1, 2):
        records.append(record(f"secure_ml dp:t={t}", 3, 2.0, 9_000_000, None, task=task))
        records[-1].update(from_result(dp_result(t)))
    return [record("secure_ml", 2, 1.0, 100, 0.95), *records]


def test_dp_rows_get_their_mean_error_as_error_vs_plain_and_no_speed_ratios():
    records = dp_records()
    finish(records)
    for r in records[1:]:
        assert r["error_vs_plain"] == pytest.approx(0.1)
        assert r["ratio_to_raw_crypten"] is None and r["ratio_to_all_on"] is None
    assert records[1]["dealer"] is None  # the curator has no dealer
    assert runner_for("secure_ml dp:t=2").keywords == {"dp": {"collusion_threshold": 2}}


def test_report_has_a_dp_section_and_keeps_dp_rows_out_of_the_task_tables(tmp_path):
    records = dp_records()
    finish(records)
    report = markdown(records, suite="test")
    assert "\n## dp_stats_breast_cancer\n" not in report  # no generic task table
    section = report.split("## DP statistics", 1)[1]
    assert "### dp_stats_breast_cancer: release 0" in section
    rows = [cells(line) for line in section.splitlines() if line.startswith("| plaintext")
            or line.startswith("| secure_ml dp")]  # fmt: skip
    # protocol, parties, t, accounted sigma, total sigma, ratio to central, mean error
    assert [row[:7] for row in rows] == [
        ["plaintext", "1", "0", "10", "10", "1", "0.1"],
        ["secure_ml dp:t=1", "3", "1", "10", "12.25", "1.22", "0.1"],
        ["secure_ml dp:t=2", "3", "2", "10", "17.32", "1.73", "0.1"],
    ]
    write_outputs(records, tmp_path, suite="test")  # the plots take DP rows too
    assert (tmp_path / "cost.png").stat().st_size > 1000


def dp_sgd_records():
    """Opacus, DP-SGD on shares and its no-dp twin with 2 parties; DP-SGD alone with 3."""
    task = "dp_logreg_breast_cancer"
    privacy = {"epsilon": 2.99, "noise_multiplier": 1.1, "noise_multiplier_total": 1.1,
               "steps": 8, "sample_rate": 0.125}  # fmt: skip
    opacus = record("plaintext", 1, 0.05, 0, 0.9, task=task)
    opacus.update(privacy, baseline="opacus", opacus_accuracy=0.9)
    dp = record("secure_ml", 2, 3.0, 600, 0.85, task=task)
    dp.update(privacy, rounds=40, opacus_accuracy=0.88, plaintext_accuracy=0.97)
    twin = record(NO_DP, 2, 2.0, 200, 0.96, task=task)
    twin.update(plaintext_accuracy=0.97)
    alone = record("secure_ml", 3, 4.0, 900, 0.8, task=task)
    alone.update(privacy, opacus_accuracy=0.88, plaintext_accuracy=0.97)
    return [record("secure_ml", 2, 1.0, 100, 0.95), opacus, dp, twin, alone]


def test_dp_sgd_run_gets_ratios_to_its_no_dp_twin_and_error_against_opacus():
    records = dp_sgd_records()
    finish(records)
    headline, opacus, dp, twin, alone = records
    assert dp[NON_DP_RATIO] == pytest.approx(1.5)
    assert dp[f"bytes_{NON_DP_RATIO}"] == pytest.approx(3.0)
    assert dp[f"rounds_{NON_DP_RATIO}"] == pytest.approx(4.0)
    for r in (headline, opacus, twin, alone):  # the twin itself, and no twin with 3 parties
        assert r[NON_DP_RATIO] is None and r[f"rounds_{NON_DP_RATIO}"] is None
    assert dp["error_vs_plain"] == pytest.approx(0.03)  # against Opacus in the same run
    assert twin["error_vs_plain"] == pytest.approx(0.01)  # against the non-DP plaintext
    assert opacus["error_vs_plain"] == pytest.approx(0.0)
    assert headline["error_vs_plain"] is None  # no plaintext record of its task here
    assert dp["ratio_to_raw_crypten"] is None and twin[PLAIN_CHANNEL_RATIO] is None


def test_report_has_a_dp_sgd_section_and_keeps_its_rows_out_of_the_task_tables(tmp_path):
    records = dp_sgd_records()
    finish(records)
    report = markdown(records, suite="test")
    assert "\n## dp_logreg_breast_cancer\n" not in report  # no generic task table
    section = report.split("## DP-SGD on shares vs without DP", 1)[1]
    assert "### dp_logreg_breast_cancer" in section
    rows = [cells(line) for line in section.splitlines() if line.startswith(("| plaintext",
            "| secure_ml"))]  # fmt: skip
    assert [row[:2] for row in rows] == [["plaintext (opacus)", "1"], ["secure_ml", "2"],
                                         [NO_DP, "2"], ["secure_ml", "3"]]  # fmt: skip
    # accuracy, Opacus accuracy, error vs plain, epsilon, both sigmas, steps, the three ratios
    assert rows[1][5:] == ["0.85", "0.88", "0.03", "2.99", "1.1", "1.1", "8", "1.5", "3", "4"]
    assert rows[2][-3:] == ["-", "-", "-"]
    headline = report.split("## logreg_breast_cancer", 1)[1].split("## DP-SGD")[0]
    assert "opacus" not in headline and NO_DP not in headline
    write_outputs(records, tmp_path, suite="test")  # the cost plot leaves them out
    assert (tmp_path / "cost.png").stat().st_size > 1000


def test_dp_sgd_fields_from_a_result():
    from secure_ml.bench.dp_sgd_rows import from_result

    privacy = {"epsilon": 2.99, "noise_multiplier": 1.1, "noise_multiplier_total": 1.1,
               "steps": 8, "sample_rate": 0.125, "delta": 1e-5}  # fmt: skip
    metrics = {"accuracy": 0.9, "plaintext_accuracy": 0.97, "opacus_accuracy": 0.92}
    fields = from_result({"privacy": privacy, "metrics": metrics})
    assert fields == {"plaintext_accuracy": 0.97, "opacus_accuracy": 0.92, "epsilon": 2.99,
                      "noise_multiplier": 1.1, "noise_multiplier_total": 1.1, "steps": 8,
                      "sample_rate": 0.125}  # fmt: skip
    twin = from_result({"privacy": None, "metrics": {"plaintext_accuracy": 0.97}})
    assert twin == {"plaintext_accuracy": 0.97}


CKKS = {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [44, 30, 30, 30, 44], "scale_bits": 30}


def he_record(protocol, parties, per_second, n=359, **extra):
    r = record(protocol, parties, n / per_second, 1000, 0.97, task=HE_TASK)
    return {**r, "samples_per_second": per_second, "seconds_per_sample": 1 / per_second,
            "latency_s": 0.5, "bytes_client_to_server": 2e6, "bytes_server_to_client": 1e5,
            "agreement_with_plaintext": 1.0, "max_abs_error": 0.02, "n_samples": n,
            **extra}  # fmt: skip


def he_records():
    return [
        he_record("plaintext", 1, 1e6, max_abs_error=None),
        he_record(HE_BATCHED, 2, 100.0, ckks=CKKS),
        # the last repeat's rate (3/s) is not the median's (2/s): the ratio uses the median
        he_record(HE_NAIVE, 1, 2.0, n=3, ckks={**CKKS, "depth": 3}, samples_per_second=3.0),
        he_record(HE_FULL, 1, 1000.0, n=4096, ckks=CKKS),
        he_record(HE_PER_SAMPLE, 2, 1.5, n=3, ckks=CKKS),
        he_record("secure_ml", 2, 900.0, bytes_client_to_server=None,
                  bytes_server_to_client=None),
        record("secure_ml", 2, 1.0, 100, 0.95),  # another task
    ]  # fmt: skip


def test_he_steps_pair_the_naive_baseline_with_the_batched_run():
    groups = together(plan(SUITES["quick"]))
    he = [[p for _, p, _, _ in g] for g in groups if g[0][0] == HE_TASK]
    assert he == [["plaintext"], [HE_BATCHED, HE_NAIVE, HE_FULL], [HE_PER_SAMPLE], ["secure_ml"]]
    assert SUITES["quick"].settings_for(HE_TASK).he_samples == 3
    assert SUITES["full"].settings_for(HE_TASK).he_samples == 5
    assert HE_TASK in SUITES["full"].tasks
    assert runner_for(HE_PER_SAMPLE).keywords == {"mode": "per_sample"}


def test_he_spec_and_mpc_spec_use_the_same_square_mlp(tmp_path, monkeypatch):
    import torch

    from secure_ml.bench import he_rows
    from secure_ml.bench.tasks import TASKS

    monkeypatch.setattr(he_rows, "trained_state", lambda seed: {"w": torch.zeros(1)})
    settings = SUITES["quick"].settings_for(HE_TASK)
    he = he_rows.he_spec(settings, tmp_path, mode="per_sample")
    mpc = TASKS[HE_TASK].make_spec(2, settings, tmp_path)
    assert he["model"] == mpc["model"] == {
        "kind": "mlp", "hidden": [32], "activation": "square",
        "weights": str(tmp_path / "he-digits-square-mlp.pt"),
    }  # fmt: skip
    assert he["data"] == mpc["data"] and he["he"]["max_samples"] == 3
    assert mpc["protocol"]["dealer"] == "ttp" and len(mpc["party"]) == 2


def test_throughput_ratio_only_on_the_batched_records_with_the_same_ckks():
    records = he_records()
    finish(records)
    assert records[1][HE_RATIO] == pytest.approx(50.0)
    assert records[3][HE_RATIO] == pytest.approx(500.0)  # the full slots' capacity
    assert records[2]["samples_per_second"] == pytest.approx(2.0)  # 3 samples / 1.5 s
    assert all(r[HE_RATIO] is None for i, r in enumerate(records) if i not in (1, 3))
    assert records[1]["error_vs_plain"] == pytest.approx(0.02)  # the logits' error
    other = he_records()
    other[2]["ckks"] = {**CKKS, "scale_bits": 40}  # other parameters: no ratio
    finish(other)
    assert other[1][HE_RATIO] is None


def test_report_has_an_he_section_and_keeps_its_rows_out_of_the_task_tables(tmp_path):
    records = he_records()
    finish(records)
    report = markdown(records, suite="test")
    assert f"\n## {HE_TASK}\n" not in report  # no generic task table
    section = report.split("## HE inference vs MPC inference, digits 64-32-10 square MLP", 1)[1]
    rows = [cells(line) for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| protocol")]  # fmt: skip
    assert [row[:2] for row in rows] == [["plaintext", "1"], [HE_BATCHED, "2"], [HE_NAIVE, "1"],
                                         [HE_FULL, "1"], [HE_PER_SAMPLE, "2"],
                                         ["secure_ml", "2"]]  # fmt: skip
    # samples, samples/s, s per sample, latency, MB up, MB down, MB sent, rounds, accuracy,
    # agreement, max abs error, ratio
    assert rows[1][2:] == ["359", "100", "0.01", "0.5", "2", "0.1", "0.001", "10", "0.97", "1",
                           "0.02", "50"]  # fmt: skip
    assert rows[5][6:8] == ["-", "-"] and rows[2][-1] == "-" and rows[3][-1] == "500"
    write_outputs(records, tmp_path, suite="test")  # the cost plot leaves them out
    assert (tmp_path / "cost.png").stat().st_size > 1000
