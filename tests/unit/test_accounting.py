"""Privacy accounting against Opacus's own accountants and an independent normal CDF.

Golden values are computed in the test through the Opacus API directly, so a
change in how ``accounting`` drives Opacus (history layout, delta, accountant
choice) shows up as a mismatch. The analytic Gaussian curve is checked against
``scipy.stats.norm``, an implementation independent of ``math.erfc``.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest

from secure_ml.release.accounting import (
    GaussianSteps,
    epsilon_for,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    laplace_scale,
    noise_multiplier_for,
)

pytest.importorskip("opacus")

#: GDP accounting warns that it is experimental on every accountant it creates
pytestmark = pytest.mark.filterwarnings("ignore:GDP accounting is experimental:UserWarning")


def opacus_epsilon(accountant: str, history: list[tuple[float, float, int]], delta: float) -> float:
    from opacus.accountants import create_accountant

    composer = create_accountant(mechanism=accountant)
    composer.history = list(history)
    return composer.get_epsilon(delta=delta)


GOLDEN = [
    ("rdp", [(1.1, 0.01, 1000)], 1e-5),
    ("rdp", [(0.8, 0.05, 200), (2.0, 1.0, 3)], 1e-6),
    ("rdp", [(4.0, 1.0, 1)], 1e-3),
    ("prv", [(1.0, 0.02, 100)], 1e-5),
    ("prv", [(1.5, 0.01, 50), (3.0, 1.0, 2)], 1e-5),
    ("gdp", [(1.2, 0.01, 500)], 1e-5),
]


@pytest.mark.parametrize(("accountant", "history", "delta"), GOLDEN)
def test_epsilon_equals_opacus(accountant, history, delta):
    blocks = [GaussianSteps(*block) for block in history]
    ours = epsilon_for(blocks, delta, accountant=accountant)
    assert ours == pytest.approx(opacus_epsilon(accountant, history, delta), rel=1e-12)
    assert ours > 0


def test_gdp_merges_equal_blocks_and_refuses_mixed_ones():
    split = [GaussianSteps(1.2, 0.01, 200), GaussianSteps(1.2, 0.01, 300)]
    assert epsilon_for(split, 1e-5, accountant="gdp") == pytest.approx(
        opacus_epsilon("gdp", [(1.2, 0.01, 500)], 1e-5), rel=1e-12
    )
    with pytest.raises(ValueError, match="accountant='rdp' or 'prv'"):
        epsilon_for(
            [GaussianSteps(1.2, 0.01, 1), GaussianSteps(2.0, 0.01, 1)], 1e-5, accountant="gdp"
        )


def test_empty_history_spends_nothing():
    assert epsilon_for([], 1e-5) == 0.0


def test_rdp_composition_beats_adding_epsilons():
    one = epsilon_for([GaussianSteps(2.0, 1.0, 1)], 1e-5)
    assert epsilon_for([GaussianSteps(2.0, 1.0, 10)], 1e-5) < 10 * one


@pytest.mark.parametrize(
    ("epsilon", "delta", "sample_rate", "steps", "accountant"),
    [(1.0, 1e-5, 0.01, 100, "rdp"), (3.0, 1e-6, 1.0, 4, "rdp"), (2.0, 1e-5, 0.02, 50, "gdp")],
)
def test_calibrate_then_report_round_trip(epsilon, delta, sample_rate, steps, accountant):
    sigma = noise_multiplier_for(
        epsilon, delta, sample_rate=sample_rate, steps=steps, accountant=accountant
    )
    spent = epsilon_for([GaussianSteps(sigma, sample_rate, steps)], delta, accountant=accountant)
    assert spent <= epsilon
    assert spent > epsilon * (1 - 2e-3)  # bisected to 0.1 % of ε, not Opacus's absolute 0.01


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.0, 2.5, 10.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-9])
def test_analytic_gaussian_epsilon_meets_delta(sigma, delta):
    epsilon = gaussian_epsilon(sigma, delta)
    assert epsilon > 0
    assert gaussian_delta(sigma, epsilon) == pytest.approx(delta, rel=1e-9)


def test_analytic_gaussian_is_monotone():
    sigmas = [0.2, 0.5, 1.0, 2.0, 5.0]
    epsilons = [gaussian_epsilon(s, 1e-5) for s in sigmas]
    assert epsilons == sorted(epsilons, reverse=True)
    deltas = [gaussian_delta(1.0, e) for e in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(deltas))
    by_delta = [gaussian_epsilon(1.0, d) for d in (1e-2, 1e-4, 1e-6, 1e-8)]
    assert by_delta == sorted(by_delta)


def test_analytic_gaussian_against_scipy():
    norm = pytest.importorskip("scipy.stats").norm

    def scipy_delta(sigma: float, epsilon: float) -> float:
        return norm.cdf(0.5 / sigma - epsilon * sigma) - math.exp(epsilon) * norm.cdf(
            -0.5 / sigma - epsilon * sigma
        )

    def scipy_epsilon(sigma: float, delta: float) -> float:
        low, high = 0.0, 100.0
        for _ in range(200):
            middle = (low + high) / 2
            low, high = (middle, high) if scipy_delta(sigma, middle) > delta else (low, middle)
        return high

    assert gaussian_epsilon(1.0, 1e-5) == pytest.approx(scipy_epsilon(1.0, 1e-5), rel=1e-9)
    assert gaussian_epsilon(1.0, 1e-5) == pytest.approx(4.3772, abs=1e-3)
    assert gaussian_epsilon(3.0, 1e-6) == pytest.approx(scipy_epsilon(3.0, 1e-6), rel=1e-9)


def test_analytic_gaussian_survives_huge_epsilon():
    epsilon = gaussian_epsilon(0.01, 1e-5)  # the privacy loss is N(5000, 100²)
    assert 5000 < epsilon < 6000
    assert gaussian_delta(0.01, 1e5) == 0.0


def test_gaussian_noise_multiplier_inverts_the_curve():
    sigma = gaussian_noise_multiplier(1.0, 1e-5)
    assert gaussian_delta(sigma, 1.0) <= 1e-5
    assert gaussian_epsilon(sigma, 1e-5) == pytest.approx(1.0, rel=1e-9)
    assert gaussian_epsilon(sigma, 1e-5) <= 1.0 + 1e-12


def test_rdp_bound_is_looser_than_the_exact_curve():
    """The RDP path (sound for the discrete Gaussian) never claims less than the exact curve."""
    for sigma in (0.5, 1.0, 4.0):
        assert gaussian_epsilon(sigma, 1e-5, exact=False) >= gaussian_epsilon(sigma, 1e-5)
        assert gaussian_epsilon(sigma, 1e-5, exact=False) == pytest.approx(
            opacus_epsilon("rdp", [(sigma, 1.0, 1)], 1e-5), rel=1e-12
        )


def test_laplace_scale():
    assert laplace_scale(1.0, 0.5) == 2.0
    assert laplace_scale(3.0, 1.5) == 2.0
    with pytest.raises(ValueError, match="sensitivity"):
        laplace_scale(0.0, 1.0)
    with pytest.raises(ValueError, match="epsilon"):
        laplace_scale(1.0, -1.0)


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: noise_multiplier_for(0.0, 1e-5, sample_rate=0.1, steps=1), "epsilon"),
        (lambda: noise_multiplier_for(1.0, 1.0, sample_rate=0.1, steps=1), "delta"),
        (lambda: noise_multiplier_for(1.0, 0.0, sample_rate=0.1, steps=1), "delta"),
        (lambda: noise_multiplier_for(1.0, 1e-5, sample_rate=1.5, steps=1), "sample_rate"),
        (lambda: noise_multiplier_for(1.0, 1e-5, sample_rate=0.0, steps=1), "sample_rate"),
        (lambda: noise_multiplier_for(1.0, 1e-5, sample_rate=0.1, steps=0), "steps"),
        (lambda: GaussianSteps(0.0, 0.1, 1), "noise_multiplier"),
        (lambda: GaussianSteps(1.0, 0.1, 2.5), "steps"),
        (lambda: gaussian_epsilon(-1.0, 1e-5), "noise_multiplier"),
        (lambda: gaussian_noise_multiplier(True, 1e-5), "epsilon"),
        (lambda: epsilon_for([], 1e-5, accountant="moments"), "'rdp', 'prv', 'gdp'"),
    ],
)
def test_bad_arguments_are_named(call, word):
    with pytest.raises(ValueError, match=word), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
