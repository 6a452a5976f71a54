"""Privacy accounting: how much (ε, δ) a sequence of noisy releases spends.

The releases are Gaussian (optionally Poisson-subsampled, as in DP-SGD) or
Laplace. Gaussian releases are composed with an Opacus accountant, chosen by
name:

- ``"rdp"`` (default): Rényi DP (Mironov 2017; subsampled, Mironov et al.
  2019). An upper bound that is never optimistic, composes any mix of noise
  levels and sample rates exactly in RDP, is deterministic and fast, and is
  the accounting the discrete noise on shares is proven for (below).
- ``"prv"``: privacy loss random variables (Gopi et al. 2021). Tighter than RDP
  for many steps; a numerical upper bound (Opacus returns ``eps_upper``).
- ``"gdp"``: Gaussian DP through the central limit theorem (Dong et al. 2019).
  An approximation that Opacus itself warns can underestimate ε; it composes
  only one (noise multiplier, sample rate) pair, so a history that mixes
  several is refused.

Discrete noise. On shares the noise is an exact discrete Gaussian on the
fixed-point grid. Canonne, Kamath and Steinke (2020) show that the discrete
Gaussian with variance parameter sigma^2 satisfies the same rho-zCDP bound as
the continuous one, rho = Δ^2 / (2 sigma^2), for an integer (grid) sensitivity
Δ, hence the same RDP curve alpha * rho: accounting it with the Gaussian's
RDP (``"rdp"``, and ``gaussian_epsilon(..., exact=False)``) is sound. The analytic (ε, δ) curve of
the continuous Gaussian (Balle & Wang 2018, ``gaussian_epsilon(exact=True)``)
is NOT proven for the discrete one: CKS show the discrete Gaussian's (ε, δ) is
within a tiny factor of it, not below it. So it is offered as the
continuous-equivalent bound (for reports and for continuous noise), and the
ledger (``secure_ml.release.ledger``) composes Gaussian releases through the
accountant, RDP by default, never through the analytic curve.

Noise multipliers are sigma/Δ: the noise's standard deviation over the
sensitivity. Laplace releases are pure ε with scale b = Δ/ε.

``opacus`` is imported inside the functions that need it, so importing this
module costs nothing and opacus stays an optional dependency (``[dp]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: the accountants this module can compose with, by name
ACCOUNTANTS = ("rdp", "prv", "gdp")

#: how close to the target epsilon a calibrated noise multiplier spends (relative)
_RELATIVE_TOLERANCE = 1e-3
#: bisection steps: enough to shrink any bracket used here to float precision
_BISECTION_STEPS = 200


@dataclass(frozen=True)
class GaussianSteps:
    """One block of ``steps`` subsampled Gaussian releases with the same noise.

    ``sample_rate`` is the Poisson sampling rate of each step; 1.0 means no
    subsampling (every record is in every release).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        _check_noise_multiplier(self.noise_multiplier)
        _check_sample_rate(self.sample_rate)
        _check_steps(self.steps)


def noise_multiplier_for(
    epsilon: float,
    delta: float,
    *,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
) -> float:
    """The smallest noise multiplier (to 0.1 % of ``epsilon``) that keeps ``steps``
    subsampled Gaussian releases within (``epsilon``, ``delta``).

    Opacus's default tolerance is 0.01 in absolute epsilon, which for a small
    target (epsilon = 0.01) can land anywhere in [0, epsilon]: far more noise
    than needed. The tolerance here is relative.

    Opacus bisects from above, so the returned sigma spends at most ``epsilon``.
    """
    check_epsilon(epsilon)
    check_delta(delta)
    _check_sample_rate(sample_rate)
    _check_steps(steps)
    check_accountant(accountant)
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
            epsilon_tolerance=_RELATIVE_TOLERANCE * epsilon,
        )
    )


def epsilon_for(
    history: Sequence[GaussianSteps], delta: float, *, accountant: str = "rdp"
) -> float:
    """The ε spent at ``delta`` by all of ``history``, composed by ``accountant``.

    Composing in the accountant (rather than adding each block's ε) is what
    makes many small releases affordable: k releases cost far less than k * one.
    """
    check_delta(delta)
    check_accountant(accountant)
    if not history:
        return 0.0
    blocks = [(b.noise_multiplier, b.sample_rate, b.steps) for b in history]
    if accountant == "gdp":
        blocks = _single_gdp_block(blocks)
    from opacus.accountants import create_accountant

    composer = create_accountant(mechanism=accountant)
    composer.history = blocks
    return float(composer.get_epsilon(delta=delta))


def _single_gdp_block(blocks: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Merge blocks for Opacus's GDP accountant, which reads only the last block."""
    pairs = {(sigma, rate) for sigma, rate, _ in blocks}
    if len(pairs) > 1:
        raise ValueError(
            "accountant='gdp' composes only releases with one noise multiplier and one "
            f"sample rate; this history has {len(pairs)} pairs: use accountant='rdp' or 'prv'"
        )
    sigma, rate = pairs.pop()
    return [(sigma, rate, sum(steps for _, _, steps in blocks))]


def gaussian_epsilon(noise_multiplier: float, delta: float, *, exact: bool = True) -> float:
    """The ε of one Gaussian release (no subsampling) at ``delta``.

    ``exact=True``: the analytic curve of the continuous Gaussian (Balle & Wang
    2018), the smallest ε it provably has. ``exact=False``: the RDP bound of
    one step, which also holds for the discrete Gaussian on the fixed-point
    grid (see the module docstring) and is what the ledger composes.
    """
    _check_noise_multiplier(noise_multiplier)
    check_delta(delta)
    if not exact:
        return epsilon_for([GaussianSteps(noise_multiplier, 1.0, 1)], delta, accountant="rdp")
    if gaussian_delta(noise_multiplier, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gaussian_delta(noise_multiplier, high) > delta:
        high *= 2.0
    return _bisect(lambda eps: gaussian_delta(noise_multiplier, eps) > delta, 0.0, high)


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """The smallest noise multiplier whose exact Gaussian curve meets (ε, δ).

    Bisects on the analytic curve (continuous Gaussian, no subsampling) and
    returns the upper end of the final bracket, so the result never overspends.
    """
    check_epsilon(epsilon)
    check_delta(delta)
    low, high = 1.0, 1.0
    while gaussian_delta(high, epsilon) > delta:
        high *= 2.0
    while gaussian_delta(low, epsilon) <= delta:
        low /= 2.0
    return _bisect(lambda sigma: gaussian_delta(sigma, epsilon) > delta, low, high)


def gaussian_delta(noise_multiplier: float, epsilon: float) -> float:
    """δ(ε) of the Gaussian mechanism with sigma/Δ = ``noise_multiplier`` (Balle & Wang 2018).

    δ(ε) = Φ(1/(2 sigma) - ε sigma) - e^ε Φ(-1/(2 sigma) - ε sigma), with Δ = 1. The second term
    is evaluated as exp(ε + log Φ(·)) so that a large ε cannot overflow e^ε.
    """
    sigma = noise_multiplier
    shift, scaled = 1.0 / (2.0 * sigma), epsilon * sigma
    first = _phi(shift - scaled)
    second = math.exp(epsilon + _log_phi(-shift - scaled))
    return max(first - second, 0.0)


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """The Laplace scale b = Δ/ε that makes one release ε-DP (pure, δ = 0)."""
    if not _is_number(sensitivity) or not 0 < sensitivity < math.inf:
        raise ValueError(f"sensitivity must be a positive finite number, not {sensitivity!r}")
    check_epsilon(epsilon)
    return sensitivity / epsilon


def _phi(x: float) -> float:
    """The standard normal CDF, through erfc so that the lower tail keeps precision."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _log_phi(x: float) -> float:
    """log Φ(x), with the asymptotic series where Φ(x) would underflow (x < -30)."""
    if x > -30.0:
        return math.log(_phi(x))
    inv = 1.0 / (x * x)
    series = 1.0 - inv + 3.0 * inv**2 - 15.0 * inv**3
    return -0.5 * x * x - math.log(-x) - 0.5 * math.log(2.0 * math.pi) + math.log(series)


def _bisect(too_small: Callable[[float], bool], low: float, high: float) -> float:
    """The upper end of the bracket where ``too_small`` turns False (conservative)."""
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if too_small(middle):
            low = middle
        else:
            high = middle
    return high


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_epsilon(epsilon: Any) -> None:
    if not _is_number(epsilon) or not 0 < epsilon < math.inf:
        raise ValueError(f"epsilon must be a positive finite number, not {epsilon!r}")


def check_delta(delta: Any) -> None:
    if not _is_number(delta) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), not {delta!r}")


def _check_sample_rate(sample_rate: Any) -> None:
    if not _is_number(sample_rate) or not 0 < sample_rate <= 1:
        raise ValueError(
            f"sample_rate must be in (0, 1] (1.0 = no subsampling), not {sample_rate!r}"
        )


def _check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, not {steps!r}")


def _check_noise_multiplier(noise_multiplier: Any) -> None:
    if not _is_number(noise_multiplier) or not 0 < noise_multiplier < math.inf:
        raise ValueError(
            f"noise_multiplier must be a positive finite number, not {noise_multiplier!r}"
        )


def check_accountant(accountant: Any) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(
            f"accountant must be one of {', '.join(repr(a) for a in ACCOUNTANTS)}, "
            f"not {accountant!r}"
        )
