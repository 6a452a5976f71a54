"""DP-SGD's public plan (Opacus's schedule and accountant) and its plaintext arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from secure_ml.errors import SpecError
from secure_ml.protocols import dp_sgd
from secure_ml.spec import spec_from_dict


def spec(accountant: str = "rdp", epsilon: float = 3.0, **train) -> object:
    return spec_from_dict({
        "protocol": {"name": "mpc.train"},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "label_owner", "receiver"]},
        ],
        "data": {"source": "sklearn:breast_cancer"},
        "train": {"epochs": 5, "batch_size": 64, **train},
        "dp": {"epsilon": epsilon, "delta": 1e-5, "max_grad_norm": 0.7, "accountant": accountant},
    })  # fmt: skip


@pytest.mark.parametrize("accountant", ["rdp", "prv", "gdp"])
def test_plan_follows_opacus_schedule_and_spends_what_opacus_says(accountant):
    from opacus.accountants import create_accountant

    plan = dp_sgd.make_plan(spec(accountant), rows=455)
    # DPDataLoader: ceil(455 / 64) = 8 batches per epoch, each row sampled at 1/8
    assert (plan.steps_per_epoch, plan.steps, plan.sample_rate) == (8, 40, 0.125)
    assert plan.expected_batch == pytest.approx(56.875) and plan.max_grad_norm == 0.7
    opacus = create_accountant(accountant)
    opacus.history = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    theirs = opacus.get_epsilon(delta=1e-5)
    block = dp_sgd.describe(spec(accountant), plan, _mechanism(plan), n_parties=3)
    assert block["epsilon"] == pytest.approx(theirs, rel=1e-6)
    assert block["epsilon"] <= 3.0 * (1 + 1e-3)  # calibrated to the target (Opacus's tolerance)
    assert block["epsilon_vs_parties"] == block["epsilon"]  # the batches are secret from all
    assert block["noise_multiplier_total"] == pytest.approx(plan.noise_multiplier * math.sqrt(3))
    assert block["epsilon_vs_larger_coalitions"] == {}  # t = n - 1: no larger coalition


def test_a_lower_threshold_reports_what_larger_coalitions_are_left_with():
    from secure_ml.release.accounting import GaussianSteps, epsilon_for

    plan = dp_sgd.make_plan(spec(), rows=455)
    mechanism = _mechanism(plan, collusion_threshold=1)
    block = dp_sgd.describe(spec(), plan, mechanism, n_parties=4)
    assert block["collusion_threshold"] == 1
    assert block["noise_multiplier_total"] == pytest.approx(
        plan.noise_multiplier * math.sqrt(4 / 3)
    )
    larger = block["epsilon_vs_larger_coalitions"]
    assert list(larger) == ["2", "3"] and block["epsilon"] < larger["2"] < larger["3"]
    two_left = GaussianSteps(plan.noise_multiplier * math.sqrt(2 / 3), 0.125, 40)
    assert larger["2"] == pytest.approx(epsilon_for([two_left], 1e-5))


def test_rates_off_the_grid_are_rounded_down_and_accounted_as_drawn():
    plan = dp_sgd.make_plan(spec(batch_size=20), rows=455)  # 23 steps per epoch
    assert plan.steps_per_epoch == 23
    assert plan.sample_rate <= 1 / 23 and plan.sample_rate * 2**16 == int(plan.sample_rate * 2**16)
    assert 1 / 23 - plan.sample_rate < 2**-16


def test_an_epsilon_the_accountant_cannot_certify_is_a_spec_error():
    with pytest.raises(SpecError, match=r"\[dp\] epsilon = 0.01: the 'rdp' accountant cannot"):
        dp_sgd.make_plan(spec(epsilon=0.01), rows=455)


def test_inverse_square_root_on_one_to_four_never_overshoots():
    z = torch.linspace(1, 4, 30_001, dtype=torch.float64)
    y = dp_sgd.inv_sqrt_1_to_4(z)
    error = y * z.sqrt() - 1
    assert error.abs().max() < 1e-6  # three Newton steps from the linear guess
    assert (error <= 1e-12).all()  # below the true value: a clip factor never too large


def _mechanism(plan, collusion_threshold=None):
    from secure_ml.release.dp import GaussianOnShares

    return GaussianOnShares(
        sensitivity=plan.max_grad_norm, noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate, steps=plan.steps, collusion_threshold=collusion_threshold,
    )  # fmt: skip
