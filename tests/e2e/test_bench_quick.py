"""`secure-ml bench --suite quick` as a smoke test (no timing assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from secure_ml.bench.harness import OPTIMISATIONS
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

FIELDS = {"task", "protocol", "parties", "wall_s", "bytes", "rounds", "accuracy",
          "error_vs_plain", "ratio_to_raw_crypten", "ratio_to_raw_crypten_closed_form",
          PLAIN_CHANNEL_RATIO, "channel", "versions", "machine"}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_quick_bench_writes_results_report_and_plots(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "secure_ml", "bench", "--suite", "quick", "--out", str(tmp_path)],
        # 6 runs + 2 short dp.stats runs + 2 one-epoch DP-SGD runs (with and without DP)
        # + HE (batched ~10 s, naive and per sample on 3 samples, mpc.infer): ~30 s more
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())
    assert all(set(r) >= FIELDS for r in records)
    headline = [r for r in records if r["task"] == "logreg_breast_cancer"]
    ours = [r for r in headline if r["protocol"] == "secure_ml"]
    assert sorted(r["parties"] for r in ours) == [2]
    for r in ours:
        assert r["ratio_to_raw_crypten"] > 0 and r["bytes"] > 0 and r["rounds"] > 0
        assert r["ratio_to_raw_crypten_closed_form"] > 0  # the engine alone
        assert r["error_vs_plain"] <= 0.05
    closed_form = [r for r in headline if r["protocol"] == "raw_crypten_closed_form"]
    assert sorted(r["parties"] for r in closed_form) == [2]
    assert all(r["error_vs_plain"] <= 0.05 for r in closed_form)  # the same model as ours
    for r in ours:
        assert all(r["mpc"][name] for name in OPTIMISATIONS)
        assert r["channel"] == "plain"  # loopback: no encryption unless asked for
    sealed = [r for r in headline if r["protocol"] == ENCRYPTED]
    assert sorted(r["parties"] for r in sealed) == [2]  # the same party counts as ours
    for r in sealed:
        assert r["channel"] == "encrypted" and r[PLAIN_CHANNEL_RATIO] > 0
        assert r["rounds"] == ours[0]["rounds"]  # the same computation, only sealed
        assert r["error_vs_plain"] <= 0.05
    before = [r for r in headline if r["protocol"] == "secure_ml ablation:none"]
    assert sorted(r["parties"] for r in before) == [2]
    for r in before:
        assert not any(r["mpc"][name] for name in OPTIMISATIONS)
        assert r["ratio_to_raw_crypten"] > 0 and r["ratio_to_all_on"] > 0
        assert r["error_vs_plain"] <= 0.05  # switching optimisations off keeps the results
    check_dp_rows(records)
    check_dp_sgd_rows(records)
    check_he_rows(records)
    report = (tmp_path / "report.md").read_text()
    assert "## logreg_breast_cancer" in report and "## Optimisations (before/after)" in report
    assert "## DP statistics: the collusion threshold's cost" in report
    assert "## HE inference vs MPC inference, digits 64-32-10 square MLP" in report
    assert f"| {HE_BATCHED} | 2 |" in report and f"| {HE_NAIVE} | 1 |" in report
    assert "## DP-SGD on shares vs without DP" in report and f"| {NO_DP} | 2 |" in report
    assert f"| {ENCRYPTED} | 2 |" in report and "ratio to plain channel" in report
    assert (tmp_path / "cost.png").stat().st_size > 1000
    assert "[########################]" in done.stdout  # the progress bar reached the end


def check_dp_rows(records):
    """Central DP carries the accounted noise; threshold t carries sqrt(3 / (3 - t)) times it."""
    dp = {r["protocol"]: r for r in records if r["task"] == "dp_stats_breast_cancer"}
    assert set(dp) == {"plaintext", "secure_ml dp:t=1", "secure_ml dp:t=2"}
    assert dp["plaintext"]["noise_ratio_to_central"] == pytest.approx(1.0, abs=1e-6)
    for t in (1, 2):
        r = dp[f"secure_ml dp:t={t}"]
        assert r["parties"] == 3 and r["dealer"] == "ttp" and r["collusion_threshold"] == t
        assert r["noise_ratio_to_central"] == pytest.approx(math.sqrt(3 / (3 - t)), abs=1e-6)
        # the calibration does not depend on t: the accountant's sigma is the central one
        assert r["noise_sigma_accounted"] == pytest.approx(dp["plaintext"]["noise_sigma_accounted"])
        assert r["bytes"] > 0 and r["rounds"] > 0 and r["wall_s"] > 0
    ratios = [dp[f"secure_ml dp:t={t}"]["noise_ratio_to_central"] for t in (1, 2)]
    assert ratios[0] < ratios[1]
    for r in dp.values():
        assert r["accuracy"] is None and math.isfinite(r["error_vs_plain"])
        assert r["error_vs_plain"] == r["mean_error_rel_width"] >= 0
        assert math.isfinite(r["histogram_error_rel_rows"])


def check_dp_sgd_rows(records):
    """DP-SGD on shares beside its no-dp twin (same command) and Opacus in plaintext."""
    rows = {r["protocol"]: r for r in records if r["task"] == "dp_logreg_breast_cancer"}
    assert set(rows) == {"plaintext", "secure_ml", NO_DP}
    opacus, dp, twin = rows["plaintext"], rows["secure_ml"], rows[NO_DP]
    assert opacus["baseline"] == "opacus" and opacus["bytes"] == 0
    assert dp["parties"] == twin["parties"] == 2 and dp["settings"] == twin["settings"]
    assert dp[NON_DP_RATIO] > 0 and dp[f"rounds_{NON_DP_RATIO}"] > 0
    # every DP step covers every row (Poisson mask on shares), not a batch of them
    assert dp[f"bytes_{NON_DP_RATIO}"] > 1
    # no rounds bound: at 1 epoch the clipping's extra rounds (more than 1.3x at 5 epochs)
    # and the per-epoch loss the DP run withholds about cancel out (0.97x measured)
    assert twin[NON_DP_RATIO] is None and opacus[NON_DP_RATIO] is None
    assert 0 < dp["epsilon"] <= 3.0 and dp["steps"] > 0 and 0 < dp["sample_rate"] < 1
    assert dp["noise_multiplier_total"] >= dp["noise_multiplier"] > 0
    assert twin.get("epsilon") is None  # the twin has no [dp]
    # one epoch of DP-SGD: no accuracy band is reliable, only the range
    for value in (dp["accuracy"], dp["opacus_accuracy"], opacus["accuracy"], twin["accuracy"]):
        assert 0 <= value <= 1
    assert dp["error_vs_plain"] == pytest.approx(abs(dp["accuracy"] - dp["opacus_accuracy"]))


def check_he_rows(records):
    """HE batched, its naive baseline, HE per sample and mpc.infer of one model."""
    rows = {r["protocol"]: r for r in records if r["task"] == HE_TASK}
    assert set(rows) == {"plaintext", HE_BATCHED, HE_NAIVE, HE_FULL, HE_PER_SAMPLE, "secure_ml"}
    batched, naive, single, mpc = (rows[p] for p in (HE_BATCHED, HE_NAIVE, HE_PER_SAMPLE,
                                                     "secure_ml"))  # fmt: skip
    # the same CKKS parameters for the ratio, and batched beats one sample per ciphertext
    for key in ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits"):
        assert naive["ckks"][key] == batched["ckks"][key]
    assert batched[HE_RATIO] > 1
    assert batched[HE_RATIO] == pytest.approx(
        batched["samples_per_second"] / naive["samples_per_second"]
    )
    assert naive[HE_RATIO] is None and mpc[HE_RATIO] is None
    # the bar: full packing is at least 100 times one sample per ciphertext
    full = rows[HE_FULL]
    assert full["n_samples"] == full["ckks"]["slots"] and full[HE_RATIO] >= 100
    assert full["agreement_with_plaintext"] >= 0.9
    assert batched["n_samples"] == mpc["n_samples"] == rows["plaintext"]["n_samples"]
    assert naive["n_samples"] == single["n_samples"] == 3  # the quick suite's he_samples
    for r in (batched, single):
        assert r["parties"] == 2 and r["dealer"] == "none" and r["rounds"] > 0
        assert r["bytes_client_to_server"] > 0 and r["bytes_server_to_client"] > 0
    assert mpc["parties"] == 2 and mpc["dealer"] == "ttp" and mpc["bytes"] > 0
    for r in (batched, naive, single, mpc):
        assert r["agreement_with_plaintext"] >= 0.9  # a few epochs' model: no tighter band
        assert 0 <= r["accuracy"] <= 1 and r["latency_s"] > 0 and r["samples_per_second"] > 0
        assert r["error_vs_plain"] == r["max_abs_error"] < 1
