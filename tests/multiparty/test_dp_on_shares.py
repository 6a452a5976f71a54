"""Gaussian noise on shares: its size, and what a coalition of parties can remove.

Each compute party adds its own exact discrete Gaussian noise to its own
share of a shared zero vector, and the noisy vector is revealed to p0. Each
party also returns its own noise to the test (never to a peer), so the test
can rebuild what any coalition of ``t`` parties knows and check that what is
left after the coalition subtracts its own noise is still the accounted noise.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from mpkit import make_spec, run_parties

from secure_ml.errors import PrivacyBudgetExceeded
from secure_ml.release import Release
from secure_ml.release.accounting import GaussianSteps, epsilon_for
from secure_ml.release.dp import GaussianOnShares, LaplaceOnShares
from secure_ml.release.ledger import Ledger

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]

DRAWS = 20_000  # the sd of a sample sd is ~0.5 %: the 3 % bands below are 6 standard errors
SCALE = 2**16
MECHANISM = GaussianOnShares(sensitivity=1.0, noise_multiplier=0.5)
LAPLACE = LaplaceOnShares(sensitivity=1.0, epsilon=2.0)


def noise_on_a_shared_zero(session):
    zero = session.share(torch.zeros(DRAWS) if session.name == "p0" else None, owner="p0")
    release = Release(name="noise", receivers=("p0",), shape=(DRAWS,), session=session)
    noisy = MECHANISM.perturb(release, zero)
    own_noise = noisy.share - zero.share  # this party's noise, in grid units
    laplace = LAPLACE.perturb(release, zero).share - zero.share  # drawn, never opened
    opened = session.reveal(noisy, to=["p0"], name="noise")
    return {"own_noise": own_noise, "opened": opened, "laplace": laplace}


def test_noise_is_as_calibrated_and_no_coalition_removes_more_than_allowed(world, tmp_path):
    results = run_parties(noise_on_a_shared_zero, make_spec(world), tmp_path)
    names = sorted(results)
    n = len(names)
    opened = results["p0"]["opened"].double()
    assert all(results[name]["opened"] is None for name in names if name != "p0")
    noise = {name: results[name]["own_noise"].double() / SCALE for name in names}
    # the opened value is exactly the sum of every party's noise: nothing else was added
    torch.testing.assert_close(opened, sum(noise.values()), atol=1e-4, rtol=0)
    # every party added its own, independent noise of sigma / sqrt(n - t), t = n - 1 here
    party_sigma = MECHANISM.party_sigma(n)
    for name in names:
        assert abs(noise[name].std().item() / party_sigma - 1) < 0.03, name
    assert abs(opened.std().item() / MECHANISM.total_sigma(n) - 1) < 0.03
    assert abs(opened.mean().item()) < 6 * MECHANISM.total_sigma(n) / math.sqrt(DRAWS)
    # Laplace: every party adds the full scale b (sd b sqrt 2; the sample sd's standard
    # error is ~0.8 % at Laplace's kurtosis, so 5 % is 6 of them), centred, symmetric
    for name in names:
        laplace = results[name]["laplace"].double() / SCALE
        assert abs(laplace.std().item() / (LAPLACE.accounted_scale * math.sqrt(2)) - 1) < 0.05
        assert abs(laplace.mean().item()) < 6 * LAPLACE.accounted_scale * math.sqrt(2 / DRAWS)
    # any t = n - 1 parties subtract what they added: the accounted noise is left
    t = MECHANISM.threshold(n)
    for coalition in itertools.combinations(names, t):
        left = opened - sum(noise[name] for name in coalition)
        assert abs(left.std().item() / MECHANISM.accounted_sigma - 1) < 0.03, coalition


NOISE_MULTIPLIER = 2.0
DELTA = 1e-5


def three_releases(session):
    """The same mechanism three times; every party returns what happened to each."""
    mechanism = GaussianOnShares(sensitivity=1.0, noise_multiplier=NOISE_MULTIPLIER)
    value = session.share(torch.ones(4) if session.name == "p0" else None, owner="p0")
    outcome = []
    for i in range(3):
        try:
            opened = session.reveal(value, to=["p0"], name=f"release {i}", mechanism=mechanism)
            outcome.append("released" if (opened is None) == (session.name != "p0") else "?")
        except PrivacyBudgetExceeded as refusal:
            outcome.append(str(refusal))
    return outcome


def test_every_owner_pays_or_no_one_releases(world, tmp_path):
    history = [GaussianSteps(NOISE_MULTIPLIER, 1.0, k) for k in (2, 3)]
    two, three = (epsilon_for([h], DELTA) for h in history)
    budget = (two + three) / 2  # two releases fit, a third does not
    ledger = str(tmp_path / "ledgers" / "{party}.json")
    spec = make_spec(world, dp={"epsilon": budget, "delta": DELTA, "ledger": ledger})
    # p1 has spent a little already (pure epsilon): it cannot pay for a second release
    prior = Ledger(ledger.replace("{party}", "p1"), owner="p1", epsilon=budget, delta=DELTA)
    left_after_one = budget - epsilon_for([GaussianSteps(NOISE_MULTIPLIER, 1.0, 1)], DELTA)
    prior.charge({"kind": "laplace", "epsilon": left_after_one * 0.9, "name": "earlier"})
    results = run_parties(three_releases, spec, tmp_path / "run")
    names = sorted(results)
    for name in names:
        first, second, third = results[name]
        assert first == "released", (name, first)
        # p1's ledger refuses the second release, so every party refuses it
        expected = "refused: it would raise" if name == "p1" else "the budget ledger of p1"
        for refused in (second, third):
            assert expected in refused and "nothing was released" in refused.lower(), refused
    for name in names:
        kept = Ledger(ledger.replace("{party}", name), owner=name, epsilon=budget, delta=DELTA)
        charged = [e["name"] for e in kept.entries()]
        assert charged == (["earlier", "release 0"] if name == "p1" else ["release 0"])
        assert kept.spent()[0] <= budget
