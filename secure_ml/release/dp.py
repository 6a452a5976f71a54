"""Differential-privacy noise added on shares, before anything is opened.

``GaussianOnShares`` is a release mechanism (``secure_ml.release.mechanism``):
``reveal(value, to=[...], mechanism=GaussianOnShares(...))`` opens the value
plus Gaussian noise that no coalition of up to ``t`` compute parties knows.

Stage by stage, on every compute party (n of them):

1. ``charge``: nothing is sent (the budget ledgers come with the ``[dp]``
   section; here the mechanism only checks its arguments);
2. ``perturb``: each party draws its own noise from an exact discrete
   Gaussian on the fixed-point grid (``secure_ml.release.noise``, CSPRNG
   only) with variance ``sigma^2 / (n - t)``, and adds it to its own share. No
   message is sent; each party knows only its own noise;
3. open: ``reveal`` sends the perturbed shares to the receivers only.

Why ``n - t``: a coalition of ``t`` parties can subtract the noise its members
added, but not the others'. The ``n - t`` parties outside it together add
variance ``sigma^2``, the calibrated noise the accountant assumed, whichever
coalition it is. The released value therefore carries ``n / (n - t)`` times
the calibrated variance (``total_sigma``); at the default ``t = n - 1``, each
party adds the full ``sigma`` and the value carries ``n sigma^2``. The guarantee holds
against any ``t`` colluding compute parties and every receiver, with the
accounted ``sigma`` (``accounted_sigma``), not the larger total.

The grid: values are fixed-point integers at scale ``2^16``, so the noise
is drawn in grid units, ``sigma_grid = sigma * 2^16`` per unit of the value. The
discrete Gaussian on that grid satisfies the same zCDP bound as the
continuous one for a sensitivity that is a whole number of grid units
(Canonne, Kamath, Steinke 2020), so the continuous Gaussian's accounting
applies; the sensitivity is rounded up to the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from secure_ml.release.mechanism import Release


@dataclass(frozen=True)
class GaussianOnShares:
    """Gaussian noise of ``noise_multiplier * sensitivity``, added on shares (see above).

    ``collusion_threshold`` is ``t``: the largest coalition of compute
    parties the noise must stay hidden from (default ``n - 1``, all but one).
    """

    sensitivity: float
    noise_multiplier: float
    collusion_threshold: int | None = None
    name: str = "gaussian on shares"

    def __post_init__(self) -> None:
        positive = {"sensitivity": self.sensitivity, "noise_multiplier": self.noise_multiplier}
        for field, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{field} must be a positive finite number, not {value!r}")
        t = self.collusion_threshold
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            raise ValueError(f"collusion_threshold must be an integer >= 0, not {t!r}")

    @property
    def accounted_sigma(self) -> float:
        """The sigma the accountant uses: what any ``t`` parties cannot remove."""
        return self.noise_multiplier * self.sensitivity

    def threshold(self, n_parties: int) -> int:
        t = n_parties - 1 if self.collusion_threshold is None else self.collusion_threshold
        if not 0 <= t < n_parties:
            raise ValueError(
                f"collusion_threshold = {t} with {n_parties} compute parties: it must be "
                f"0..{n_parties - 1} (a coalition of all parties knows every share)"
            )
        return t

    def total_sigma(self, n_parties: int) -> float:
        """The sigma of all the noise in the released value: ``sigma sqrt(n / (n - t))``."""
        t = self.threshold(n_parties)
        return self.accounted_sigma * math.sqrt(n_parties / (n_parties - t))

    def party_sigma(self, n_parties: int) -> float:
        """The sigma each compute party adds: ``sigma / sqrt(n - t)``."""
        return self.accounted_sigma / math.sqrt(n_parties - self.threshold(n_parties))

    def charge(self, release: Release) -> None:
        self.threshold(release.roster.world_size)  # refuse a bad threshold before any noise

    def perturb(self, release: Release, value: Any) -> Any:
        from secure_ml.release.noise import discrete_gaussian

        scale = int(value.encoder.scale)
        n = release.roster.world_size
        # sigma on the grid, from the sensitivity rounded up to whole grid units
        sensitivity_grid = math.ceil(self.sensitivity * scale)
        sigma = self.noise_multiplier * sensitivity_grid / math.sqrt(n - self.threshold(n))
        # a whole number of grid units, rounded up: never less noise than accounted
        sigma_grid = max(1, math.ceil(sigma))
        noisy = value.clone()
        noisy.share = noisy.share + discrete_gaussian(sigma_grid, tuple(value.share.shape))
        return noisy
