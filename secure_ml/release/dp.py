"""Differential-privacy noise added on shares, before anything is opened.

``GaussianOnShares`` and ``LaplaceOnShares`` are release mechanisms
(``secure_ml.release.mechanism``): ``reveal(value, to=[...], mechanism=...)``
opens the value plus noise that no coalition of up to ``t`` compute parties
knows, after charging the budget of every data owner whose data it touches.

Stage by stage, on every compute party (n of them):

1. ``charge``: each owner among the compute parties checks its own budget
   ledger (``[dp] ledger``, ``secure_ml.release.ledger``) for this release.
   The compute parties then exchange one verdict each (a boolean: "my ledger
   can pay"); each party learns only which owners can pay, never how much is
   left elsewhere. If any owner cannot, every party refuses
   (``PrivacyBudgetExceeded``) and nothing else is sent. Otherwise each owner
   charges its ledger (deciding again under the ledger's lock), before any
   noise is drawn: a crash after this can only over-count;
2. ``perturb``: each party draws its own noise, an exact discrete Gaussian or
   Laplace on the fixed-point grid (``secure_ml.release.noise``, CSPRNG
   only), and adds it to its own share. No message is sent; each party knows
   only its own noise;
3. open: ``reveal`` sends the perturbed shares to the receivers only.

Gaussian, why sigma^2 / (n - t) per party: a coalition of ``t`` parties can
subtract the noise its members added, but not the others'. The ``n - t``
parties outside it together add variance sigma^2, the calibrated noise the
accountant assumed, whichever coalition it is. The released value carries
``n / (n - t)`` times the calibrated variance (``total_sigma``): at the
default ``t = n - 1`` each party adds the full sigma. The guarantee holds
against any ``t`` colluding compute parties and every receiver, with the
accounted sigma, not the larger total.

Laplace: a sum of Laplace noises is not Laplace, so each party adds the full
calibrated scale, whatever ``t``: one party outside the coalition already
gives the pure epsilon guarantee (the rest is post-processing). The released
value carries ``n`` Laplace noises.

The grid: values are fixed-point integers at scale ``2^16``, so noise is
drawn in grid units. The sensitivity is rounded up to whole grid units and
the noise's sigma (or scale) up to a whole number of them: never less noise
than accounted. The discrete Gaussian satisfies the continuous Gaussian's
zCDP bound for a grid sensitivity (Canonne, Kamath, Steinke 2020), so the
Gaussian's RDP accounting applies; the discrete Laplace of scale b is
(sensitivity / b)-DP.
"""

from __future__ import annotations

import math
from typing import Any

from secure_ml.errors import PrivacyBudgetExceeded, SpecError
from secure_ml.release.mechanism import Release

#: the guarantee's adversary, as result.json states it
AGAINST = "any {t} colluding compute parties and every receiver"


def _positive(field: str, value: Any) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"{field} must be a positive finite number, not {value!r}")


class _OnShares:
    """What both mechanisms share: owners, threshold, the charge and the grid."""

    def __init__(
        self,
        sensitivity: float,
        collusion_threshold: int | None,
        owners: tuple[str, ...] | None,
        name: str,
    ) -> None:
        _positive("sensitivity", sensitivity)
        t = collusion_threshold
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            raise ValueError(f"collusion_threshold must be an integer >= 0, not {t!r}")
        if owners is not None and not all(isinstance(o, str) for o in owners):
            raise ValueError(f"owners must be party names, not {owners!r}")
        self.sensitivity = sensitivity
        self.collusion_threshold = collusion_threshold
        #: the data owners whose data the value touches (None: every data owner)
        self.owners = None if owners is None else tuple(owners)
        self.name = name

    def threshold(self, n_parties: int) -> int:
        t = n_parties - 1 if self.collusion_threshold is None else self.collusion_threshold
        if not 0 <= t < n_parties:
            raise ValueError(
                f"collusion_threshold = {t} with {n_parties} compute parties: it must be "
                f"0..{n_parties - 1} (a coalition of all parties knows every share)"
            )
        return t

    def ledger_entry(self, release: Release) -> dict[str, Any]:
        raise NotImplementedError

    def charge(self, release: Release) -> None:
        self.threshold(release.roster.world_size)  # a bad threshold is refused before anything
        charge_owners(release, self.ledger_entry(release), self.owners)

    def on_grid(self, value: Any) -> tuple[Any, int]:
        """``value`` at the usual fixed-point scale (2^16), and the sensitivity on that grid.

        CrypTen's comparisons return integers at scale 1: noise drawn on that
        grid would round the sensitivity and sigma up to whole units, far more
        noise than accounted (and than ``describe`` reports). Multiplying every
        share by 2^16 is local and exact (the counts are small integers). The
        sensitivity is rounded up to whole grid units.
        """
        usual = type(value.encoder)()
        ratio = int(usual.scale) // int(value.encoder.scale)
        if ratio > 1:
            rescaled = value.clone()
            rescaled.share = value.share * ratio
            rescaled.encoder = usual
            value = rescaled
        return value, math.ceil(self.sensitivity * int(value.encoder.scale))


class GaussianOnShares(_OnShares):
    """Gaussian noise of ``noise_multiplier * sensitivity`` (L2), added on shares.

    ``epsilon``/``delta``: what this one release costs on the accountant's
    curve (for ``describe``); the ledgers compose the noise multiplier itself.
    ``sample_rate`` and ``steps``: a release that stands for ``steps``
    Poisson-subsampled Gaussian steps (DP-SGD charges its whole training at
    once, then ``perturb``s every step); the ledger entry composes them.
    """

    def __init__(
        self,
        sensitivity: float,
        noise_multiplier: float,
        collusion_threshold: int | None = None,
        *,
        owners: tuple[str, ...] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        sample_rate: float = 1.0,
        steps: int = 1,
        name: str = "gaussian on shares",
    ) -> None:
        from secure_ml.release.accounting import GaussianSteps

        _positive("noise_multiplier", noise_multiplier)
        super().__init__(sensitivity, collusion_threshold, owners, name)
        GaussianSteps(noise_multiplier, sample_rate, steps)  # validates rate and steps
        self.noise_multiplier = noise_multiplier
        self.sample_rate, self.steps = sample_rate, steps
        self.epsilon, self.delta = epsilon, delta

    @property
    def accounted_sigma(self) -> float:
        """The sigma the accountant uses: what any ``t`` parties cannot remove."""
        return self.noise_multiplier * self.sensitivity

    def total_sigma(self, n_parties: int) -> float:
        """The sigma of all the noise in the released value: ``sigma sqrt(n / (n - t))``."""
        t = self.threshold(n_parties)
        return self.accounted_sigma * math.sqrt(n_parties / (n_parties - t))

    def noise_sd(self, n_parties: int) -> float:
        """The standard deviation of all the noise in the released value."""
        return self.total_sigma(n_parties)

    def party_sigma(self, n_parties: int) -> float:
        """The sigma each compute party adds: ``sigma / sqrt(n - t)``."""
        return self.accounted_sigma / math.sqrt(n_parties - self.threshold(n_parties))

    def ledger_entry(self, release: Release) -> dict[str, Any]:
        return {
            "kind": "gaussian",
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "name": release.name,
        }

    def perturb(self, release: Release, value: Any) -> Any:
        from secure_ml.release.noise import discrete_gaussian

        n = release.roster.world_size
        value, sensitivity_grid = self.on_grid(value)
        sigma = self.noise_multiplier * sensitivity_grid / math.sqrt(n - self.threshold(n))
        return _add_own_noise(value, discrete_gaussian(max(1, math.ceil(sigma)), _shape(value)))

    def describe(self, n_parties: int) -> dict[str, Any]:
        t = self.threshold(n_parties)
        return {
            "mechanism": "gaussian",
            "sensitivity": self.sensitivity,
            "noise_multiplier": self.noise_multiplier,
            "accounted_sigma": self.accounted_sigma,
            "total_sigma": self.total_sigma(n_parties),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "collusion_threshold": t,
            "against": AGAINST.format(t=t),
        }


class LaplaceOnShares(_OnShares):
    """Laplace noise of scale ``sensitivity / epsilon`` (L1), added in full by each party."""

    def __init__(
        self,
        sensitivity: float,
        epsilon: float,
        collusion_threshold: int | None = None,
        *,
        owners: tuple[str, ...] | None = None,
        name: str = "laplace on shares",
    ) -> None:
        _positive("epsilon", epsilon)
        super().__init__(sensitivity, collusion_threshold, owners, name)
        self.epsilon = epsilon

    @property
    def accounted_scale(self) -> float:
        return self.sensitivity / self.epsilon

    def total_scale(self, n_parties: int) -> float:
        """The standard deviation of all the noise over sqrt(2): ``b sqrt(n)``."""
        return self.accounted_scale * math.sqrt(n_parties)

    def noise_sd(self, n_parties: int) -> float:
        """The standard deviation of all the noise: n Laplace(b), ``b sqrt(2 n)``."""
        return self.total_scale(n_parties) * math.sqrt(2)

    def ledger_entry(self, release: Release) -> dict[str, Any]:
        return {"kind": "laplace", "epsilon": self.epsilon, "name": release.name}

    def perturb(self, release: Release, value: Any) -> Any:
        from secure_ml.release.noise import discrete_laplace

        value, sensitivity_grid = self.on_grid(value)
        scale = max(1, math.ceil(sensitivity_grid / self.epsilon))
        return _add_own_noise(value, discrete_laplace(scale, _shape(value)))

    def describe(self, n_parties: int) -> dict[str, Any]:
        t = self.threshold(n_parties)
        return {
            "mechanism": "laplace",
            "sensitivity": self.sensitivity,
            "epsilon": self.epsilon,
            "delta": 0.0,
            "accounted_scale": self.accounted_scale,
            "total_std": self.noise_sd(n_parties),
            "collusion_threshold": t,
            "against": AGAINST.format(t=t),
        }


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.share.shape)


def _add_own_noise(value: Any, noise: Any) -> Any:
    """``value`` with ``noise`` (grid units) added to this party's share only."""
    noisy = value.clone()
    noisy.share = noisy.share + noise
    return noisy


def charge_owners(release: Release, entry: dict[str, Any], owners: tuple[str, ...] | None) -> None:
    """Stage 1 of the module docstring: every owner can pay, or every party refuses."""
    session: Any = release.session
    roster = release.roster
    compute = [p for p in roster.parties if p.crypten]
    owning = _owners(roster, compute, owners)
    ledger, refusal = None, None
    if session.name in owning:
        ledger = _ledger_of(session)
        try:
            ledger.check(entry)
        except PrivacyBudgetExceeded as error:
            refusal = str(error)
    verdicts = session.links.all_gather_obj(refusal is None, [p.rank for p in compute])
    short = [p.name for p, ok in zip(compute, verdicts, strict=True) if ok is not True]
    if refusal is not None:
        raise PrivacyBudgetExceeded(refusal)
    if short:
        raise PrivacyBudgetExceeded(
            f"release {release.name!r} refused: the budget ledger of {', '.join(short)} "
            "cannot pay for it (its party's error says what is left); nothing was released"
        )
    if ledger is not None:
        ledger.charge(entry)


def _owners(roster: Any, compute: list[Any], owners: tuple[str, ...] | None) -> set[str]:
    names = {p.name for p in compute}
    if owners is None:
        return {p.name for p in compute if "data_owner" in p.roles}
    unknown = [o for o in owners if o not in names]
    if unknown:
        raise ValueError(
            f"owners {unknown} are not compute parties ({', '.join(sorted(names))}): only "
            "a compute party keeps a budget ledger for its data"
        )
    return set(owners)


def _ledger_of(session: Any) -> Any:
    from secure_ml.release.ledger import Ledger

    dp = session.spec.dp
    if dp is None or dp.ledger is None:
        raise SpecError(
            f"party {session.name} owns data this release touches but keeps no budget "
            "ledger: add [dp] with epsilon, delta and ledger = PATH (its own JSON file)"
        )
    path = dp.ledger.replace("{party}", session.name)
    return Ledger(
        path, owner=session.name, epsilon=dp.epsilon, delta=dp.delta, accountant=dp.accountant
    )
