"""dp.stats's 95 % intervals cover the clamped statistics over repeated releases.

No MPC: a fixed synthetic column is clamped and summed in the clear (the sums
the parties compute on shares), and each repeated release adds the noise the
parties would add. Every one of the n compute parties calls the real
mechanism's ``perturb`` on its own share (party 0 holds the exact value on the
2^16 grid, the others zero), so the noise is drawn by the exact samplers of
``secure_ml.release.noise`` at exactly the parties' scales. The receivers'
``post_process`` then gives the intervals, and the test counts how often each
one covers the exact value: sum, mean, variance and every histogram count, for
the Gaussian and the Laplace mechanism with 2 and 3 parties.

Significance. Each coverage rate is a binomial proportion over independent
releases (the histogram's bins carry independent noise, so its R * bins
events are independent too). A rate is checked against 0.95 - K standard
errors (K = 5: one-sided normal tail 2.9e-7). Where the interval is the exact
95 % quantile of the noise (sum, mean, histogram counts), the rate is also
checked against 0.95 + K standard errors, so an interval that is too wide
(e.g. the 99 % quantile, or a sd counted twice) fails. 4 configurations x
7 one-sided checks (4 lower, 3 upper) are 28 checks, so the family-wise
false-failure probability is below 28 * 2.9e-7 ~ 1e-5 (union bound). At
R = 5000 releases the bands are 0.95 +- 0.015 (+- 0.008 for the pooled
histogram bins), so an interval with true coverage 0.90 (e.g. the noise of
only n - 1 parties accounted for) or 0.99 (the 99 % quantile) fails with
probability ~1.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from secure_ml.protocols.stats import (
    LEVEL,
    Column,
    calibrate,
    mechanism_for,
    plan_queries,
    post_process,
)
from secure_ml.spec import spec_from_dict

SCALE = 2**16
REPEATS = 5000  # releases per configuration
K = 5.0  # standard errors in each one-sided band: normal tail 2.9e-7 per check
COLUMN = Column(name="x", index=0, lower=0.0, upper=10.0)
BINS = (0.0, 2.5, 5.0, 7.5, 10.0)
ROWS = 2000  # enough rows for the variance interval to be informative at epsilon = 1
WANTED = ("sum", "mean", "variance", "histogram")


def synthetic_column() -> torch.Tensor:
    """A fixed column in [-2, 12): some rows below, some above the bounds, some outside the bins."""
    generator = torch.Generator().manual_seed(11)
    return torch.rand(ROWS, generator=generator, dtype=torch.float64) * 14 - 2


def exact_statistics(x: torch.Tensor) -> dict[str, object]:
    clamped = x.clamp(COLUMN.lower, COLUMN.upper)
    total = float(clamped.sum())
    sumsq = float(((clamped - COLUMN.mid) ** 2).sum())
    counts = [float(((x >= a) & (x < b)).sum()) for a, b in itertools.pairwise(BINS)]
    return {
        "sum": total,
        "sumsq": sumsq,
        "mean": total / ROWS,
        "variance": float(((clamped - clamped.mean()) ** 2).mean()),
        "histogram": torch.tensor(counts, dtype=torch.float64),
    }


class Encoder:
    """What ``on_grid`` reads of a CrypTen encoder: its scale (default 2^16)."""

    def __init__(self, scale: int = SCALE) -> None:
        self.scale = scale


class Shared:
    """One party's share: the int64 tensor and its encoder, as ``perturb`` sees it."""

    def __init__(self, share: torch.Tensor, encoder: Encoder) -> None:
        self.share, self.encoder = share, encoder

    def clone(self) -> Shared:
        return Shared(self.share.clone(), self.encoder)


def noisy_releases(mechanism, exact: torch.Tensor, n_parties: int, scale: int) -> torch.Tensor:
    """REPEATS releases of ``exact``: every party perturbs its own share, the shares are summed.

    ``scale`` is the encoder's (1 for histogram counts: CrypTen's comparisons
    return integers, and ``on_grid`` rescales them to 2^16 before the noise).
    """
    release = SimpleNamespace(roster=SimpleNamespace(world_size=n_parties))
    value = torch.round(exact.expand(REPEATS, *exact.shape) * scale).to(torch.int64)
    total = torch.zeros(value.shape, dtype=torch.int64)
    for party in range(n_parties):
        mine = value if party == 0 else torch.zeros_like(value)
        noisy = mechanism.perturb(release, Shared(mine, Encoder(scale)))
        assert noisy.encoder.scale == SCALE
        total += noisy.share
    return total.double() / SCALE


def spec(mechanism: str):
    return spec_from_dict(
        {
            "protocol": {"name": "dp.stats"},
            "party": [
                {"name": "a", "roles": ["data_owner"]},
                {"name": "b", "roles": ["data_owner", "receiver"]},
            ],
            "data": {"source": "sklearn:breast_cancer", "partition": "horizontal"},
            "stats": {
                "columns": [0],
                "lower": COLUMN.lower,
                "upper": COLUMN.upper,
                "queries": list(WANTED),
                "bins": list(BINS),
                "mechanism": mechanism,
            },
            "dp": {"epsilon": 1.0, "delta": 1e-5},
        }
    )


def covers(interval: list[float], value: float) -> bool:
    return interval[0] <= value <= interval[1]


@pytest.mark.parametrize("n_parties", [2, 3])
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_intervals_cover_the_clamped_statistics(kind: str, n_parties: int) -> None:
    checked = spec(kind)
    columns = [COLUMN]
    queries = plan_queries(checked, columns)
    assert [q.kind for q in queries] == ["sum", "sumsq", "histogram"]
    budget = calibrate(checked, len(queries))
    mechanisms = [mechanism_for(checked, q, ("a", "b"), budget) for q in queries]
    exact = exact_statistics(synthetic_column())
    opened = [
        noisy_releases(mechanisms[0], torch.tensor(exact["sum"]), n_parties, SCALE),
        noisy_releases(mechanisms[1], torch.tensor(exact["sumsq"]), n_parties, SCALE),
        noisy_releases(mechanisms[2], exact["histogram"], n_parties, 1),
    ]
    hits = {"sum": 0, "mean": 0, "variance": 0, "histogram": 0}
    for r in range(REPEATS):
        out = post_process(
            columns, queries, {i: o[r] for i, o in enumerate(opened)}, mechanisms,
            n=ROWS, n_parties=n_parties, wanted=WANTED, bins=BINS,
        )["x"]  # fmt: skip
        for name in ("sum", "mean", "variance"):
            hits[name] += covers(out[name]["ci95"], exact[name])
        intervals = out["histogram"]["ci95"]
        hits["histogram"] += sum(map(covers, intervals, exact["histogram"].tolist()))
    trials = {name: REPEATS for name in hits} | {"histogram": REPEATS * (len(BINS) - 1)}
    for name, count in hits.items():
        rate = count / trials[name]
        band = K * math.sqrt(LEVEL * (1 - LEVEL) / trials[name])
        assert rate >= LEVEL - band, (name, rate, LEVEL - band)
        # the variance's interval is conservative by design (union bound, |mean - mid| <= w/2);
        # the others are the exact quantile of the noise, so too wide an interval is caught
        if name != "variance":
            assert rate <= LEVEL + band, (name, rate, LEVEL + band)
