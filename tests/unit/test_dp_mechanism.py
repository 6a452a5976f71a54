"""GaussianOnShares: how the noise is split over the parties, and bad arguments."""

from __future__ import annotations

import math

import pytest

from secure_ml.release import ReleaseMechanism
from secure_ml.release.dp import GaussianOnShares


def test_noise_split_over_the_parties_outside_any_coalition():
    mechanism = GaussianOnShares(sensitivity=2.0, noise_multiplier=1.5)
    assert isinstance(mechanism, ReleaseMechanism)
    assert mechanism.accounted_sigma == 3.0
    # default t = n - 1: each party adds the full sigma, the value carries n sigma^2
    assert mechanism.threshold(3) == 2
    assert mechanism.party_sigma(3) == pytest.approx(3.0)
    assert mechanism.total_sigma(3) == pytest.approx(3.0 * math.sqrt(3))
    # t = 1 of 3: the two parties outside it add sigma^2 together
    honest_majority = GaussianOnShares(sensitivity=2.0, noise_multiplier=1.5, collusion_threshold=1)
    assert honest_majority.party_sigma(3) == pytest.approx(3.0 / math.sqrt(2))
    assert honest_majority.total_sigma(3) == pytest.approx(3.0 * math.sqrt(1.5))
    # t = 0 (no collusion at all): the noise is split evenly, the total is sigma itself
    assert GaussianOnShares(1.0, 1.0, collusion_threshold=0).total_sigma(4) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensitivity": 0.0, "noise_multiplier": 1.0}, "sensitivity must be a positive"),
        ({"sensitivity": 1.0, "noise_multiplier": float("nan")}, "noise_multiplier must be"),
        ({"sensitivity": 1.0, "noise_multiplier": 1.0, "collusion_threshold": -1}, ">= 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianOnShares(**kwargs)


def test_a_coalition_of_every_party_is_refused():
    with pytest.raises(ValueError, match=r"collusion_threshold = 3 with 3 compute parties"):
        GaussianOnShares(1.0, 1.0, collusion_threshold=3).threshold(3)
