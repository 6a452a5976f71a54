"""Gaussian noise on shares: its size, and what a coalition of parties can remove.

Each compute party adds its own exact discrete Gaussian noise to its own
share of a shared zero vector, and the noisy vector is revealed to p0. Each
party also returns its own noise to the test (never to a peer), so the test
can rebuild what any coalition of ``t`` parties knows and check that what is
left after the coalition subtracts its own noise is still the accounted noise.

The same run also checks dp.stats's clamping on shares: one huge row changes
the sums, centred sums of squares and histograms computed on shares by no more
than the sensitivities ``plan_queries`` declares (revealed without noise).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from mpkit import make_spec, run_parties

from secure_ml.errors import PrivacyBudgetExceeded
from secure_ml.protocols import stats
from secure_ml.protocols.stats import GRID, Column
from secure_ml.release import Release
from secure_ml.release.accounting import GaussianSteps, epsilon_for
from secure_ml.release.dp import GaussianOnShares, LaplaceOnShares
from secure_ml.release.ledger import Ledger
from secure_ml.spec import spec_from_dict

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]

DRAWS = 20_000  # the sd of a sample sd is ~0.5 %: the 3 % bands below are 6 standard errors
SCALE = 2**16
MECHANISM = GaussianOnShares(sensitivity=1.0, noise_multiplier=0.5)
LAPLACE = LaplaceOnShares(sensitivity=1.0, epsilon=2.0)


# --- clamping on shares: what one huge row can contribute ---------------------

#: two columns with public bounds, as dp.stats resolves them
COLUMNS = [Column("a", 0, 0.0, 10.0), Column("b", 1, -5.0, 5.0)]
EDGES = (-5.0, 0.0, 2.5, 5.0, 10.0)  # histogram bins [a, b), on the unclamped values
ROWS, HUGE_ROW = 20, 7
#: 1e6 is far outside every bound and every bin, and 1e6 * 2^16 ~ 6.6e10 is far inside
#: int64 (and the ring's sign bit, so the comparisons on shares are exact). It is above
#: the "product" sharing limit (2^15), since dp.stats never multiplies two raw values,
#: so it is shared with limit="encode" (|x| < 2^47).
HUGE = (1e6, -1e6)


def neighbouring_columns() -> tuple[torch.Tensor, torch.Tensor]:
    """D (ROWS x 2, some values outside the bounds) and D' = D with one row made huge.

    The replaced row sits where it moves each statistic the most: column a at its
    lower bound (the clamped sum then moves by the full width), column b at its
    midpoint (the centred sum of squares moves by the full (w/2)^2).
    """
    generator = torch.Generator().manual_seed(5)
    d = torch.rand(ROWS, 2, generator=generator, dtype=torch.float64) * 16 - 3
    d[:, 1] -= 5  # column a in [-3, 13), column b in [-8, 8): both beyond their bounds
    d[HUGE_ROW] = torch.tensor([COLUMNS[0].lower, COLUMNS[1].mid])
    d_prime = d.clone()
    d_prime[HUGE_ROW] = torch.tensor(HUGE)
    return d, d_prime


def statistics_on_shares(session, x):
    """The sums dp.stats computes on shares (as ``DPStats.run``), opened to p0 without noise."""
    lower = torch.tensor([c.lower for c in COLUMNS])
    upper = torch.tensor([c.upper for c in COLUMNS])
    mid = torch.tensor([c.mid for c in COLUMNS])
    clamped = stats.clamp(x, lower, upper)
    centred = clamped - mid
    values = {
        "sum": clamped.sum(0),
        "sumsq": (centred * centred).sum(0),
        "histogram": stats.histogram(x, torch.tensor(EDGES)),
        "raw_sum": x.sum(0),  # unclamped: shows the huge row is really there
    }
    return {k: session.reveal(v, to=["p0"], name=k) for k, v in values.items()}


def noise_on_a_shared_zero(session):
    zero = session.share(torch.zeros(DRAWS) if session.name == "p0" else None, owner="p0")
    release = Release(name="noise", receivers=("p0",), shape=(DRAWS,), session=session)
    noisy = MECHANISM.perturb(release, zero)
    own_noise = noisy.share - zero.share  # this party's noise, in grid units
    laplace = LAPLACE.perturb(release, zero).share - zero.share  # drawn, never opened
    opened = session.reveal(noisy, to=["p0"], name="noise")
    # the clamping check rides on this run (no extra multiparty run): D and D' on shares
    clamping = []
    for data in neighbouring_columns():
        mine = data.float() if session.name == "p0" else None
        x = session.share(mine, owner="p0", limit="encode", name="columns")
        clamping.append(statistics_on_shares(session, x))
    return {"own_noise": own_noise, "opened": opened, "laplace": laplace, "clamping": clamping}


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
    others = [results[name]["clamping"] for name in names if name != "p0"]
    assert all(v is None for clamping in others for c in clamping for v in c.values())
    check_one_huge_row(results["p0"]["clamping"])


def check_one_huge_row(clamping: list[dict[str, torch.Tensor]]) -> None:
    """|f(D) - f(D')| <= the declared sensitivity, for the statistics computed on shares."""
    spec = spec_from_dict(
        {
            "protocol": {"name": "dp.stats"},
            "party": [{"name": "p0", "roles": ["data_owner", "receiver"]}],
            "data": {"source": "sklearn:breast_cancer", "partition": "vertical"},
            "stats": {
                "columns": [0, 1],
                "lower": [c.lower for c in COLUMNS],
                "upper": [c.upper for c in COLUMNS],
                "queries": ["variance", "histogram"],
                "bins": list(EDGES),
            },
            "dp": {"epsilon": 1.0, "delta": 1e-5},
        }
    )
    queries = stats.plan_queries(spec, COLUMNS)
    assert {q.kind for q in queries} == {"sum", "sumsq", "histogram"}
    before, after = ({k: v.double() for k, v in c.items()} for c in clamping)
    # fixed point: each clamped value is exact (relu is a product with a 0/1 bit), each
    # centred square is truncated once (<= a few grid units each), summed over ROWS rows
    tolerance = {"sum": 4 * ROWS * GRID, "sumsq": 64 * ROWS * GRID, "histogram": 1e-9}
    d, d_prime = neighbouring_columns()
    for data, opened in ((d, before), (d_prime, after)):  # the shares computed the right thing
        lower = torch.tensor([c.lower for c in COLUMNS], dtype=torch.float64)
        upper = torch.tensor([c.upper for c in COLUMNS], dtype=torch.float64)
        mid = torch.tensor([c.mid for c in COLUMNS], dtype=torch.float64)
        clamped = torch.maximum(torch.minimum(data, upper), lower)
        torch.testing.assert_close(opened["sum"], clamped.sum(0), atol=tolerance["sum"], rtol=0)
        sumsq = ((clamped - mid) ** 2).sum(0)
        torch.testing.assert_close(opened["sumsq"], sumsq, atol=tolerance["sumsq"], rtol=0)
    for query in queries:
        column = COLUMNS[query.column]
        change = (before[query.kind][query.column] - after[query.kind][query.column]).abs()
        declared = query.l1  # L1 = L2 for the one-number sums; the histogram's L1 is 2
        assert float(change.sum()) <= declared + tolerance[query.kind], (query, column, change)
    # the bounds are tight where the huge row was placed: a's sum moves by its full width,
    # b's centred sum of squares by its full (w/2)^2; each histogram loses the row's count
    a, b = COLUMNS
    assert abs(float(before["sum"][0] - after["sum"][0])) > a.width - tolerance["sum"]
    assert abs(float(before["sumsq"][1] - after["sumsq"][1])) > (b.width / 2) ** 2 - 1e-3
    assert (before["histogram"].sum(1) - after["histogram"].sum(1)).tolist() == [1.0, 1.0]
    # without the clamp, the huge row would move the sums by ~1e6: clamping was not skipped
    raw_change = after["raw_sum"] - before["raw_sum"]
    assert raw_change[0] > HUGE[0] - 100 and raw_change[1] < HUGE[1] + 100


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
