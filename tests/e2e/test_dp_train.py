"""DP-SGD on shares through `secure-ml run`: a tiny budget gives a noise-dominated model
and is accounted as Opacus accounts it; the spent ledgers then refuse the next run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from testkit import REPO, secure_ml_run

from secure_ml.errors import EXIT_CODES, PrivacyBudgetExceeded

SPEC = REPO / "protocols" / "dp_train_breast_cancer.toml"
#: epsilon = 0.01 for one epoch: sigma ~160 (GDP: RDP cannot certify so small an epsilon)
TINY = ["dp.epsilon=0.01", 'dp.accountant="gdp"', "train.epochs=1"]


def run(out, ledgers, *overrides):
    sets = [*TINY, f"dp.ledger={ledgers}/{{party}}.json", *overrides]
    return secure_ml_run(SPEC, out, sets, timeout=150)


@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_tiny_budget_gives_noise_and_the_spent_ledgers_refuse(tmp_path):
    from opacus.accountants import create_accountant

    ledgers = tmp_path / "ledgers"
    done = run(tmp_path / "first", ledgers)
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((tmp_path / "first" / "result.json").read_text())
    privacy, metrics = result["privacy"], result["metrics"]
    sigma, rate, steps = privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"]
    assert (rate, steps) == (0.125, 8)  # ceil(455 / 64) Poisson steps at rate 1/8
    opacus = create_accountant("gdp")
    opacus.history = [(sigma, rate, steps)]
    assert privacy["epsilon"] == pytest.approx(opacus.get_epsilon(delta=1e-5), rel=1e-6)
    assert privacy["epsilon"] <= 0.01 * (1 + 1e-3) and privacy["accountant"] == "gdp"
    assert privacy["noise_multiplier_total"] == pytest.approx(sigma * math.sqrt(3))
    assert privacy["collusion_threshold"] == 2 and privacy["epsilon_vs_parties"] > 0
    assert "epochs" not in metrics  # the per-epoch loss is withheld under DP
    assert result["revealed_to"]["model"] == ["hospital_c"]
    # the weights are noise: each of the 31 has a random walk of sd lr sigma_total sqrt(T) /
    # (q N), ~6.9 here, so their norm is ~38; what the clipped gradients can add is at most
    # lr T C / (q N) * (rows sampled) ~ 5 in norm. Half the noise's norm: a chi(31) variable
    # falls below half its mean with probability < 1e-7; without noise the norm is < 6.
    state = torch.load(tmp_path / "first" / "parties" / "hospital_c" / "model.pt")
    norm = torch.cat([state["linear.weight"].flatten(), state["linear.bias"]]).norm().item()
    walk = 0.5 * privacy["noise_sigma_total"] * math.sqrt(steps) / privacy["expected_batch_size"]
    assert norm > 0.5 * walk * math.sqrt(31)
    # near chance: a noise-dominated linear model (the clipped signal is ~1/8 of the noise)
    # scores > 0.95 on these 114 test rows with probability ~1e-4 (random directions)
    assert metrics["accuracy"] < 0.95 and metrics["plaintext_accuracy"] > 0.95
    for owner in ("hospital_a", "hospital_b", "hospital_c"):
        entries = json.loads((ledgers / f"{owner}.json").read_text())["entries"]
        assert len(entries) == 1 and entries[0]["steps"] == steps

    # the same run again: every hospital's ledger has spent its epsilon = 0.01
    refused = run(tmp_path / "second", ledgers)
    assert refused.returncode == EXIT_CODES[PrivacyBudgetExceeded], refused.stderr
    assert "PrivacyBudgetExceeded" in refused.stderr and "left ε=" in refused.stderr
    assert not (tmp_path / "second" / "result.json").exists()
    assert not list((tmp_path / "second").rglob("model.pt"))
    for owner in ("hospital_a", "hospital_b", "hospital_c"):
        assert len(json.loads((ledgers / f"{owner}.json").read_text())["entries"]) == 1


@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_horizontal_mlp_example_trains_like_opacus(tmp_path):
    """Rows split between clinics: standardised and clamped on shares, an MLP backward
    pass through ReLU; at a loose budget the model on shares learns what Opacus learns."""
    sets = ["dp.epsilon=50", f"dp.ledger={tmp_path}/ledgers/{{party}}.json", "model.hidden=[8]",
            "train.epochs=3", "train.batch_size=768", "train.lr=2.0"]  # fmt: skip
    done = secure_ml_run(REPO / "protocols" / "dp_train_digits_mlp.toml", tmp_path / "run", sets,
                         timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    metrics, privacy = result["metrics"], result["privacy"]
    assert (privacy["steps"], privacy["sample_rate"]) == (6, 0.5)  # ceil(1437 / 768) = 2 an epoch
    assert privacy["epsilon"] <= 50 * (1 + 1e-3)
    assert metrics["opacus_accuracy"] > 0.4  # ten classes: chance is 0.1
    assert abs(metrics["accuracy"] - metrics["opacus_accuracy"]) < 0.1, metrics
    assert result["revealed_to"]["model"] == ["clinic_c"]
