"""The plaintext Opacus baseline of DP-SGD runs, and the pooled data it shares with
the plaintext reference."""

from __future__ import annotations

import statistics

import pytest
import torch

from secure_ml.protocols.dp_sgd import DPSGDPlan, make_plan
from secure_ml.protocols.train import MPCTrain, opacus_reference, pooled_data
from secure_ml.release.accounting import GaussianSteps, epsilon_for
from secure_ml.release.opacus_baseline import check_schedule
from secure_ml.sharing.sampling import on_grid
from secure_ml.spec import spec_from_dict

pytest.importorskip("opacus")

#: the smallest epsilon an RDP calibration reaches at delta = 1e-5 (Opacus's largest
#: order is 63): sigma = 80 at this schedule, so the noise dominates the 8 steps
TINY_EPSILON = 0.105


def spec(*, seed: int = 0, epsilon: float = 3.0, epochs: int = 1, **sections):
    raw = {
        "protocol": {"name": "mpc.train", "seed": seed},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "label_owner", "receiver"]},
        ],
        "data": {"source": "sklearn:breast_cancer", "partition": "vertical"},
        "model": {"kind": "logreg"},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.5},
        "dp": {"epsilon": epsilon, "delta": 1e-5, "max_grad_norm": 1.0},
    }
    raw.update(sections)
    if raw["dp"] is None:
        del raw["dp"]
    return spec_from_dict(raw)


def test_opacus_learns_breast_cancer_at_epsilon_3():
    metrics = opacus_reference(spec(epochs=2))
    assert 0.85 <= metrics["opacus_accuracy"] <= 1.0
    assert metrics["opacus_train_seconds"] > 0


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_opacus_is_near_chance_at_tiny_epsilon():
    # Pure noise predicts with w or -w alike, so its accuracy averages 0.5 over seeds
    # (below the 63% majority class); the same runs without noise average 0.93, and
    # no seed is below 0.89. A missing or much smaller noise fails the upper bound.
    runs = [opacus_reference(spec(seed=seed, epsilon=TINY_EPSILON)) for seed in range(10)]
    accuracies = [run["opacus_accuracy"] for run in runs]
    assert 0.3 <= statistics.mean(accuracies) <= 0.8


def test_opacus_epsilon_is_our_accountants_for_the_same_run():
    run = spec(epochs=2)
    metrics = opacus_reference(run)
    rows = len(pooled_data(run).x_train)
    plan = make_plan(run, rows)
    assert metrics["opacus_noise_multiplier"] == plan.noise_multiplier
    # 455 rows, batch 64: 8 steps per epoch at q = 1/8, already on the 2^-16 grid
    assert metrics["opacus_sample_rate"] == plan.sample_rate == 1 / 8
    steps = GaussianSteps(plan.noise_multiplier, metrics["opacus_sample_rate"], plan.steps)
    ours = epsilon_for([steps], 1e-5, accountant="rdp")
    assert metrics["opacus_epsilon"] == pytest.approx(ours, rel=1e-6)
    assert metrics["opacus_epsilon"] <= 3.0


def test_opacus_schedule_matches_the_shares_up_to_the_grid():
    # digits: 1437 rows at batch 64 is 23 steps; 1/23 is off the grid by < 2^-16
    plan = DPSGDPlan(1437, 23, 1, on_grid(1 / 23), noise_multiplier=1.0, max_grad_norm=1.0)
    assert plan.sample_rate < 1 / 23
    assert check_schedule(plan, 23) == 1 / 23
    with pytest.raises(ValueError, match="would not be the same run"):
        check_schedule(plan, 22)


def test_pooled_data_is_standardised_and_encoded():
    data = pooled_data(spec())
    assert (data.task, data.n_classes) == ("binary", 2)
    assert data.x_train.shape == (455, 30) and data.x_test.shape == (114, 30)
    assert data.y_train.shape == (455, 1)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(30), atol=1e-4)
    digits = pooled_data(spec(data={"source": "sklearn:digits", "partition": "horizontal"},
                              party=[{"name": "a", "roles": ["data_owner", "receiver"]},
                                     {"name": "b", "roles": ["data_owner"]}]))  # fmt: skip
    assert (digits.task, digits.n_classes) == ("multiclass", 10)
    assert digits.y_train.shape == (len(digits.x_train), 10)


def test_plaintext_reference_adds_the_opacus_baseline_with_dp():
    metrics = MPCTrain.plaintext_reference(spec(), {})
    assert {"plaintext_accuracy", "opacus_accuracy", "opacus_epsilon"} <= set(metrics)
    no_dp = spec(dp=None)
    assert "opacus_accuracy" not in MPCTrain.plaintext_reference(no_dp, {})


def test_plaintext_reference_has_no_opacus_baseline_for_private_csvs():
    parties = [
        {"name": "a", "roles": ["data_owner"], "data": "csv:a.csv", "label_column": "y"},
        {"name": "b", "roles": ["data_owner", "receiver"], "data": "csv:b.csv",
         "label_column": "y"},
    ]  # fmt: skip
    csv = spec(party=parties, data={"partition": "horizontal"})
    metrics = MPCTrain.plaintext_reference(csv, {})
    assert metrics == {"plaintext_accuracy": None, "opacus_accuracy": None}
