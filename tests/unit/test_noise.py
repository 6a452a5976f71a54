"""Exact discrete Gaussian / Laplace noise: distribution, tails, CSPRNG, errors.

Statistical tests are random (the samplers have no seed, by design). Each one
uses a fixed significance level chosen so that a correct sampler fails with
probability below 1e-6 overall: every p-value test rejects at ALPHA = 1e-8,
and every "within k standard errors" test uses k >= 6 (normal tail 2e-9);
fewer than 20 such checks run, so the family-wise false-failure rate is below
1e-6 (union bound). Each test is also sized so that a plausible wrong sampler
(wrong sigma by a few percent, rounded continuous Gaussian, truncated tails)
is far outside its acceptance region; ``test_chi_square_catches_rounded_gaussian``
shows this for the pmf test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from secure_ml.release import noise
from secure_ml.release.noise import as_rational, discrete_gaussian, discrete_laplace

ALPHA = 1e-8  # per-test rejection level of every p-value test below


# --- exact reference distributions --------------------------------------------


def gaussian_pmf(sigma: float, lo: int, hi: int) -> dict[int, float]:
    """Exact N_Z(0, sigma^2) pmf on [lo, hi]; the normalizer sums 80 sigma each side."""
    reach = int(80 * sigma) + 10
    weight = {x: math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-reach, reach + 1)}
    total = math.fsum(weight.values())
    return {x: weight[x] / total for x in range(lo, hi + 1)}


def laplace_pmf(scale: float, lo: int, hi: int) -> dict[int, float]:
    """Exact discrete Laplace pmf: (1-q)/(1+q) q^|x| with q = exp(-1/scale)."""
    q = math.exp(-1 / scale)
    return {x: (1 - q) / (1 + q) * q ** abs(x) for x in range(lo, hi + 1)}


def chi_square_pvalue(draws: np.ndarray, pmf: dict[int, float]) -> float:
    """Chi-square goodness of fit; values with expected count < 5 are pooled.

    Two tail bins ("<= k" and ">= k") take every value whose own expected count
    is below 5, including anything outside ``pmf``'s support (their mass is the
    rest of 1), so no bin has an expected count below 5.
    """
    n = draws.size
    central = [x for x, p in pmf.items() if n * p >= 5]
    lo, hi = min(central), max(central)
    observed = [np.count_nonzero(draws < lo), np.count_nonzero(draws > hi)]
    inner = sum(pmf[x] for x in range(lo, hi + 1))
    tail_mass = (1 - inner) / 2  # both distributions are symmetric
    expected = [n * tail_mass, n * tail_mass]
    for x in range(lo, hi + 1):
        observed.append(np.count_nonzero(draws == x))
        expected.append(n * pmf[x])
    if expected[0] < 5:  # pool the tails into the end bins when they are too light
        observed = [observed[2] + observed[0], *observed[3:-1], observed[-1] + observed[1]]
        expected = [expected[2] + expected[0], *expected[3:-1], expected[-1] + expected[1]]
    expected = np.array(expected) * (sum(observed) / sum(expected))  # float rounding only
    return float(stats.chisquare(observed, expected).pvalue)


# --- discrete Gaussian ------------------------------------------------------


def test_gaussian_std_for_large_sigma() -> None:
    # sigma = 2^16 grid units (1.0 at scale 2^16). The sample std has standard
    # error about sigma / sqrt(2n) = 0.16 % for n = 200k, so the 3 % band is
    # 19 standard errors wide: a correct sampler never leaves it, while a sigma
    # off by 3 % (or CrypTen's fixed-point randn scaled wrongly) does.
    sigma = 2**16
    draws = discrete_gaussian(sigma, 200_000).double()
    assert abs(draws.mean().item()) < 6 * sigma / math.sqrt(200_000)
    assert abs(draws.std().item() / sigma - 1) < 0.03


def test_gaussian_tails_match_exact_mass() -> None:
    # sigma = 3 grid units, n = 2.5M draws. Exact tail masses from the pmf:
    # P(|X| > 12) ~ 2.9e-5 (expected count ~ 70: a two-sided exact binomial test
    # at ALPHA rejects a tail mass off by a factor ~1.8 or more, e.g. sigma
    # 10 % too small, Laplace-like or thin tails). P(|X| > 15) ~ 2.1e-7 gives an
    # expected count ~ 0.5: the budget of < 10 s does not allow the ~1e8 draws
    # needed for power at 5 sigma (nor the ~5e6 needed to see a 4.7-sigma cut
    # like CrypTen's randn), so at 5 sigma we check only that the count is
    # consistent with theory (binomial upper tail p-value >= ALPHA).
    sigma, n = 3, 2_500_000
    draws = discrete_gaussian(sigma, n).numpy()
    magnitude = np.abs(draws)
    pmf = gaussian_pmf(sigma, -100, 100)
    for k, two_sided in ((4, True), (5, False)):
        threshold = k * sigma
        mass = math.fsum(p for x, p in pmf.items() if abs(x) > threshold)
        count = int(np.count_nonzero(magnitude > threshold))
        alternative = "two-sided" if two_sided else "greater"
        pvalue = stats.binomtest(count, n, mass, alternative=alternative).pvalue
        assert pvalue >= ALPHA, (k, count, n * mass)
    assert magnitude.max() < 40 * sigma  # P(|X| > 40 sigma) < 1e-300 per draw


def test_gaussian_five_sigma_tail_compositionally() -> None:
    # The 5-sigma tail of N_Z(0, sigma^2) has mass ~5.7e-7: counting it directly needs
    # ~1e8 draws (test_gaussian_tails_match_exact_mass can only check consistency
    # there). The sampler is CKS Alg. 3 with t = sigma: a discrete Laplace proposal Y
    # of scale sigma, kept with probability exp(-(|Y| - sigma)^2 / (2 sigma^2)). Each
    # proposal is independent of the acceptance coin, so the output's tail mass beyond
    # 5 sigma is sum_y P(Y = y) accept(y) / Z over |y| > 5 sigma. This test checks the
    # two factors where the tail lives, each with a few hundred expected events:
    # (a) the proposal's mass beyond 5 sigma, (b) the acceptance coin at 5 sigma, with
    # the exact integers _gaussian_candidates passes; and (c) that those exact factors
    # multiply out to the discrete Gaussian's tail. That is the 5-sigma test: a sampler
    # with a truncated or thinned tail must get (a) or (b) wrong. Both are exact
    # binomial tests at ALPHA (two-sided): a factor off by ~35 % or more is caught.
    sigma = Fraction(7, 2)  # rational scale: the Laplace proposal divides by b = 2
    a, b = sigma.numerator, sigma.denominator
    five = 18  # the smallest |y| beyond 5 sigma = 17.5
    # (a) proposal: P(|Y| >= m) = 2 q^m / (1 + q), q = exp(-1/sigma); 0.0067 for m = 18,
    # so 200k tries (~125k candidates) give ~830 expected events
    q = math.exp(-1 / float(sigma))
    proposal_tail = 2 * q**five / (1 + q)
    y = noise._laplace_candidates(a, b, 200_000)
    count = int(np.count_nonzero(np.abs(y) >= five))
    assert stats.binomtest(count, y.size, proposal_tail).pvalue >= ALPHA, (count, y.size)
    # (b) acceptance at |y| = 18 (5.14 sigma): gamma = (b|y| - a)^2 / (2 a^2) = 841/98,
    # exp(-gamma) = 1.9e-4; 2M coins give ~375 expected acceptances. gamma's integer
    # part (8 Bernoulli(exp(-1)) in a row) and its fraction are both exercised.
    x = b * five - a
    accept = math.exp(-Fraction(x * x, 2 * a * a))
    coins = noise._bernoulli_exp(np.full(2_000_000, x * x, dtype=np.int64), 2 * a * a)
    kept = int(np.count_nonzero(coins))
    assert stats.binomtest(kept, coins.size, accept).pvalue >= ALPHA, (kept, coins.size * accept)
    # (c) the exact factors give the exact discrete Gaussian tail beyond 5 sigma
    s = float(sigma)

    def weight(v: int) -> float:  # proposal(v) * accept(v), up to a constant
        return q ** abs(v) * math.exp(-((abs(v) - s) ** 2) / (2 * s * s))

    reach = range(-250, 251)  # 71 sigma each side: the rest is below 1e-300
    tail = math.fsum(weight(v) for v in reach if abs(v) >= five)
    composed = tail / math.fsum(weight(v) for v in reach)
    pmf = gaussian_pmf(s, -250, 250)
    target = math.fsum(p for v, p in pmf.items() if abs(v) >= five)
    assert composed == pytest.approx(target, rel=1e-9)
    assert 4e-7 < target < 8e-7


@pytest.mark.parametrize("sigma", [1, Fraction(1, 2), Fraction(7, 5), 0.7])
def test_gaussian_pmf_chi_square(sigma: Fraction | int | float) -> None:
    # Exact pmf on [-6 sigma, 6 sigma] (mass outside < 2e-9, pooled into the end
    # bins), n = 200k. Fractions exercise the rational scale of the Laplace
    # proposal (denominator > 1); the float goes through as_rational (7/10).
    exact = float(as_rational(sigma))
    reach = math.ceil(6 * exact)
    draws = discrete_gaussian(sigma, 200_000).numpy()
    assert chi_square_pvalue(draws, gaussian_pmf(exact, -reach, reach)) >= ALPHA


def test_chi_square_catches_rounded_gaussian() -> None:
    # Power of the pmf test: round(N(0, 1)) is the natural wrong sampler (P(0)
    # is 0.383 instead of 0.399); with 200k draws it is rejected far below ALPHA.
    # The numpy generator is seeded so this check is deterministic.
    wrong = np.rint(np.random.default_rng(1).normal(0, 1, 200_000)).astype(np.int64)
    assert chi_square_pvalue(wrong, gaussian_pmf(1.0, -6, 6)) < ALPHA


def test_gaussian_large_sigma_uses_exact_fallbacks() -> None:
    # sigma = 2^30 - 1: the vectorized path, but ~5 % of the Laplace candidates
    # have |b|Y| - a| >= 2^31 and take the Python-int Bernoulli. sigma = 2^31:
    # the plain Python-int sampler. n is small (the scalar path is slow); the
    # std's standard error is ~1/sqrt(2n), so the bands are 7 standard errors.
    for sigma, n, band in ((2**30 - 1, 4000, 0.08), (2**31, 400, 0.25)):
        draws = discrete_gaussian(sigma, n)
        assert draws.dtype == torch.int64
        assert abs(draws.double().std().item() / sigma - 1) < band, sigma


def test_scalar_reference_matches_pmf() -> None:
    # The Python-int path (used beyond int64 range) checked at sigma = 1 on 20k
    # draws, against the same exact pmf and ALPHA.
    draws = np.array([noise._scalar_gaussian(Fraction(1)) for _ in range(20_000)])
    assert chi_square_pvalue(draws, gaussian_pmf(1.0, -6, 6)) >= ALPHA


# --- discrete Laplace -------------------------------------------------------


@pytest.mark.parametrize("scale", [5, Fraction(7, 2)])
def test_laplace_mean_and_variance(scale: Fraction | int) -> None:
    # Exact moments of P(x) ∝ q^|x|, q = exp(-1/scale): variance 2q/(1-q)^2;
    # the fourth moment (for the standard error of the sample variance) by
    # summing the pmf. n = 400k: both checks use 6 standard errors (normal tail
    # 2e-9); the variance band is then ~2.5 % of the variance, so a scale off
    # by 2 % (variance off ~4 %) is caught.
    n, t = 400_000, float(scale)
    q = math.exp(-1 / t)
    variance = 2 * q / (1 - q) ** 2
    pmf = laplace_pmf(t, -60 * math.ceil(t), 60 * math.ceil(t))
    fourth = math.fsum(p * x**4 for x, p in pmf.items())
    draws = discrete_laplace(scale, n).double()
    assert abs(draws.mean().item()) < 6 * math.sqrt(variance / n)
    sample_variance = draws.var().item()
    assert abs(sample_variance - variance) < 6 * math.sqrt((fourth - variance**2) / n)


def test_laplace_pmf_chi_square() -> None:
    # Exact pmf, scale 3/2, n = 200k, rejection at ALPHA.
    draws = discrete_laplace(Fraction(3, 2), 200_000).numpy()
    assert chi_square_pvalue(draws, laplace_pmf(1.5, -40, 40)) >= ALPHA


# --- CSPRNG, shapes, exact parameters ----------------------------------------


def test_two_calls_differ_and_leave_generators_alone() -> None:
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    first, second = discrete_gaussian(2**16, 1000), discrete_gaussian(2**16, 1000)
    laplace_first, laplace_second = discrete_laplace(100, 1000), discrete_laplace(100, 1000)
    # equal only if 1000 draws of sigma 2^16 collide: probability < 1e-1000
    assert not torch.equal(first, second)
    assert not torch.equal(laplace_first, laplace_second)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    # a fixed torch seed does not fix the noise either
    torch.manual_seed(0)
    again = discrete_gaussian(2**16, 1000)
    torch.manual_seed(0)
    assert not torch.equal(again, discrete_gaussian(2**16, 1000))


@pytest.mark.parametrize("sampler", [discrete_gaussian, discrete_laplace])
@pytest.mark.parametrize(("size", "shape"), [(5, (5,)), ((3, 4), (3, 4)), (0, (0,)), ((), ())])
def test_shape_and_dtype(sampler, size, shape) -> None:
    out = sampler(3, size)
    assert out.dtype == torch.int64
    assert tuple(out.shape) == shape


def test_as_rational_is_exact() -> None:
    assert as_rational(2**16) == Fraction(2**16)
    assert as_rational(Fraction(1, 3)) == Fraction(1, 3)
    assert as_rational(0.7) == Fraction(7, 10)
    assert as_rational(65536.0) == Fraction(65536)
    # a large float keeps ~30 significant bits and a numerator below 2^30
    value = as_rational(123456.789)
    assert value.numerator < 2**30
    assert abs(value - Fraction(123456.789)) / Fraction(123456.789) < Fraction(1, 2**28)


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize("sampler", [discrete_gaussian, discrete_laplace])
@pytest.mark.parametrize(
    "param", [0, -1, Fraction(-1, 2), 0.0, -2.5, float("nan"), float("inf"), True, "1", None]
)
def test_bad_scale(sampler, param) -> None:
    with pytest.raises(ValueError, match=r"sigma|scale|expected"):
        sampler(param, 4)


@pytest.mark.parametrize("sampler", [discrete_gaussian, discrete_laplace])
@pytest.mark.parametrize("size", [-1, (2, -1), 2.5, "3", True, [2, 2], (2, 1.0), None])
def test_bad_size(sampler, size) -> None:
    with pytest.raises(ValueError, match="size"):
        sampler(3, size)
