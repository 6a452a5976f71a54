"""``dp.stats``: differentially private statistics over data secret-shared by several owners.

Parties: data owners (each holds some columns of the same rows, ``vertical``;
or some rows of every column, ``horizontal``), and one or more receivers. The
``[stats]`` section names the columns, their public clamp bounds and the
queries (count, sum, mean, variance, histogram); ``[dp]`` the budget.

Stages, and what each party sends and learns:

1. ``load`` (local): each owner reads only its own part of the built-in
   source (all its rows: train and test) and keeps the requested columns.
2. ``share``: each owner secret-shares its block; every party learns the
   shapes (the row count of each owner, the number of columns).
3. ``compute`` (on shares, nothing opened): each value is clamped to its
   column's public [lower, upper] as ``lower + relu(x - lower) - relu(x -
   upper)``; per column the sum of clamped values, the sum of squares of the
   clamped values centred on the public midpoint, and the histogram counts
   ``(x >= a) - (x >= b)`` (bins [a, b), on the unclamped values) are sums
   over rows, local on shares.
4. ``release``: each sum, sum of squares and histogram is opened to the
   receivers only, through a DP mechanism (``secure_ml.release.dp``) that
   first charges the budget ledger of every owner whose data it touches
   (refusing on every party, before anything is sent, if one cannot pay),
   then has each party add its own noise to its own share.
5. post-processing (receivers, local): mean = sum / n, variance = centred sum
   of squares / n - (mean - midpoint)^2, and a 95 % confidence interval for
   each value that accounts for the noise.

Privacy. Neighbouring datasets differ in the values of one row (replace-one,
"bounded" DP): the row count n is public, since sharing reveals every owner's
row count to all compute parties (as in ``mpc.train``), and the receivers are
compute parties. So the count is released exactly and costs no budget. For a
column clamped to [lower, upper] of width w, one row changes the sum by at
most w, the centred sum of squares by at most (w/2)^2, and the histogram by
moving one count from a bin to another: L1 = 2, L2 = sqrt(2). Each release is
one column's sum, sum of squares or histogram; with k releases in a run,
``[dp] epsilon`` and ``delta`` are split evenly, eps/k and delta/k each, and
the run spends (epsilon, delta) by basic composition. A Gaussian release has
the noise multiplier of ``gaussian_noise_multiplier(eps/k, delta/k)`` (the
exact Gaussian curve), or, if larger, the one that keeps k such releases
within (epsilon, delta) under the ledger's accountant: the ledgers compose
Gaussian releases through the accountant (RDP by default), and for one or two
releases RDP's bound is looser than the exact curve (which, moreover, is the
continuous Gaussian's; the accountant's bound is the one proven for the
discrete noise on shares). A Laplace release has scale sensitivity / (eps/k).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.data.local import data_owners, load_local
from secure_ml.data.partition import vertical_columns
from secure_ml.data.sources import SKLEARN_DATASETS
from secure_ml.parties import RECEIVER
from secure_ml.protocols.base import (
    Fail,
    PartyOutput,
    Protocol,
    require_builtin_source,
    require_crypten_parties,
)

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec

#: the confidence level of every interval
LEVEL = 0.95
#: shrinks each Laplace epsilon by a hair so that k of them sum to at most epsilon in floats
_FLOAT_MARGIN = 1e-9
#: fixed-point resolution of a shared value (16 fractional bits)
GRID = 2.0**-16
NEIGHBOURING = "replace one row (bounded DP; the row count n is public)"


@dataclass(frozen=True)
class Column:
    """One requested column: its name, its index in the source, who holds it, its bounds."""

    name: str
    index: int
    lower: float
    upper: float

    @property
    def width(self) -> float:
        return self.upper - self.lower

    @property
    def mid(self) -> float:
        return (self.lower + self.upper) / 2


@dataclass(frozen=True)
class Query:
    """One released quantity: a column's sum, centred sum of squares or histogram."""

    kind: str  # "sum" | "sumsq" | "histogram"
    column: int  # position in the requested columns
    l1: float
    l2: float

    def label(self, column: Column) -> str:
        what = {"sum": "sum", "sumsq": "centred sum of squares", "histogram": "histogram"}
        return f"{what[self.kind]} of {column.name}"


# ------------------------------------------------------------------ columns --


@lru_cache(maxsize=8)
def _feature_table(source: str) -> tuple[int, tuple[str, ...] | None]:
    """How many features a built-in sklearn source has, and their names (if it names them).

    Loaded once per source: check_spec, the column plan and the sharing all ask.
    """
    import sklearn.datasets

    _scheme, _, name = source.partition(":")
    bunch = getattr(sklearn.datasets, SKLEARN_DATASETS[name][0])()
    names = getattr(bunch, "feature_names", None)
    return int(bunch.data.shape[1]), None if names is None else tuple(str(n) for n in names)


def feature_names(source: str) -> tuple[str, ...] | None:
    """The feature names of a built-in sklearn source (None for other sources)."""
    scheme, _, name = source.partition(":")
    if scheme != "sklearn" or name not in SKLEARN_DATASETS:
        return None
    return _feature_table(source)[1]


def n_features(source: str) -> int:
    return _feature_table(source)[0]


def resolve_columns(spec: Spec) -> list[Column]:
    """The requested columns, by name or index, with their bounds (ValueError if unknown)."""
    stats = spec.stats
    names = feature_names(spec.data.source)
    total = len(names) if names is not None else n_features(spec.data.source)
    out = []
    for wanted, (lower, upper) in zip(stats.columns, stats.bounds(), strict=True):
        if isinstance(wanted, str):
            if names is None or wanted not in names:
                known = "" if names is None else f"; known: {', '.join(names)}"
                raise ValueError(f"column {wanted!r} is not a feature of {spec.data.source}{known}")
            index = names.index(wanted)
        else:
            if wanted >= total:
                raise ValueError(
                    f"column {wanted} is out of range: {spec.data.source} has {total} features"
                )
            index = wanted
        name = names[index] if names is not None else f"column {index}"
        out.append(Column(name=name, index=index, lower=lower, upper=upper))
    return out


def vertical_holders(spec: Spec, columns: list[Column]) -> list[tuple[int, int]]:
    """Vertical split: per column, the index of its owner and its position in that block."""
    blocks = vertical_columns(n_features(spec.data.source), len(data_owners(spec)))
    out = []
    for column in columns:
        k = next(k for k, b in enumerate(blocks) if b.start <= column.index < b.stop)
        out.append((k, column.index - blocks[k].start))
    return out


def column_owners(spec: Spec, columns: list[Column]) -> list[tuple[str, ...]]:
    """The data owners whose data each column holds (vertical: one; horizontal: all)."""
    owners = data_owners(spec)
    if spec.data.partition != "vertical":
        return [tuple(o.name for o in owners)] * len(columns)
    return [(owners[k].name,) for k, _ in vertical_holders(spec, columns)]


def plan_queries(spec: Spec, columns: list[Column]) -> list[Query]:
    """The releases of one run, in order: per column its sum, sum of squares, histogram."""
    wanted = set(spec.stats.queries)
    queries = []
    for i, column in enumerate(columns):
        if wanted & {"sum", "mean", "variance"}:
            queries.append(Query("sum", i, l1=column.width, l2=column.width))
        if "variance" in wanted:
            d = (column.width / 2) ** 2
            queries.append(Query("sumsq", i, l1=d, l2=d))
        if "histogram" in wanted:
            queries.append(Query("histogram", i, l1=2.0, l2=math.sqrt(2.0)))
    return queries


# --------------------------------------------------------------- calibration --


def calibrate(spec: Spec, k: int) -> dict[str, Any]:
    """The per-release budget and (Gaussian) noise multiplier for k releases."""
    from secure_ml.release.accounting import gaussian_noise_multiplier, noise_multiplier_for

    dp = spec.dp
    eps_q, delta_q = dp.epsilon / k, dp.delta / k
    if spec.stats.mechanism == "laplace":
        return {"epsilon_per_release": eps_q * (1 - _FLOAT_MARGIN), "delta_per_release": 0.0}
    exact = gaussian_noise_multiplier(eps_q, delta_q)
    accounted = noise_multiplier_for(
        dp.epsilon, dp.delta, sample_rate=1.0, steps=k, accountant=dp.accountant
    )
    return {
        "epsilon_per_release": eps_q,
        "delta_per_release": delta_q,
        "noise_multiplier": max(exact, accounted),
        "noise_multiplier_exact_curve": exact,
        "noise_multiplier_accountant": accounted,
    }


def mechanism_for(spec: Spec, query: Query, owners: tuple[str, ...], budget: dict) -> Any:
    from secure_ml.release.dp import GaussianOnShares, LaplaceOnShares

    threshold = spec.dp.collusion_threshold
    if spec.stats.mechanism == "laplace":
        return LaplaceOnShares(
            sensitivity=query.l1,
            epsilon=budget["epsilon_per_release"],
            collusion_threshold=threshold,
            owners=owners,
        )
    return GaussianOnShares(
        sensitivity=query.l2,
        noise_multiplier=budget["noise_multiplier"],
        collusion_threshold=threshold,
        owners=owners,
        epsilon=budget["epsilon_per_release"],
        delta=budget["delta_per_release"],
    )


# ------------------------------------------------------------------ intervals --


def noise_quantile(mechanism: Any, n_parties: int, tail: float) -> float:
    """q with P(|noise| > q) = ``tail`` for all the noise in one released value.

    Gaussian: the total noise is normal with sd ``total_sigma``. Laplace: each
    party adds a full Laplace(b), so the total is a sum of n Laplace(b), i.e.
    the difference of two Gamma(n, b) variables; its quantile is computed
    exactly by numerical integration (for n = 1: b * ln(1 / tail)).
    """
    from statistics import NormalDist

    from secure_ml.release.dp import GaussianOnShares

    if isinstance(mechanism, GaussianOnShares):
        z = NormalDist().inv_cdf(1 - tail / 2)
        return z * mechanism.noise_sd(n_parties)
    b = mechanism.accounted_scale
    if n_parties == 1:
        return b * math.log(1 / tail)
    return b * _laplace_sum_quantile(n_parties, tail)


@lru_cache(maxsize=64)
def _laplace_sum_quantile(n: int, tail: float) -> float:
    """q with P(|L_1 + ... + L_n| > q) = tail, L_i iid Laplace(1)."""
    from scipy import integrate, optimize, stats

    gamma = stats.gamma(n)

    def upper_tail(q: float) -> float:  # P(G1 - G2 > q)
        value, _ = integrate.quad(lambda y: gamma.sf(q + y) * gamma.pdf(y), 0, math.inf)
        return value

    high = 1.0
    while 2 * upper_tail(high) > tail:
        high *= 2
    return float(optimize.brentq(lambda q: 2 * upper_tail(q) - tail, 0.0, high, xtol=1e-10))


def _interval(value: float, radius: float, low: float | None = None, high: float | None = None):
    """``value +- radius``, cut to the feasible ``[low, high]`` where it overlaps it.

    When the noise pushed the whole interval outside the feasible range, it
    is left as it is: cutting it would give an empty or a made-up interval.
    """
    lo, hi = value - radius, value + radius
    cut_lo = lo if low is None else max(lo, low)
    cut_hi = hi if high is None else min(hi, high)
    return [cut_lo, cut_hi] if cut_lo <= cut_hi else [lo, hi]


def post_process(
    columns: list[Column],
    queries: list[Query],
    opened: dict[int, torch.Tensor],
    mechanisms: list[Any],
    *,
    n: int,
    n_parties: int,
    wanted: tuple[str, ...],
    bins: tuple[float, ...] | None,
) -> dict[str, Any]:
    """The receivers' statistics and their 95 % intervals, from the noisy sums.

    Each interval covers the clamped statistic with probability >= 95 % over
    the noise, plus a fixed-point allowance (the shared values' rounding). The
    variance combines two noisy sums: each is bounded at the 97.5 % level (union
    bound, so both hold with >= 95 %) and |mean - midpoint| <= w/2, giving
    radius qQ/n + 2 (w/2) qS/n + (qS/n)^2.
    """
    out: dict[str, Any] = {}
    by_kind = {(q.kind, q.column): i for i, q in enumerate(queries)}
    for c, column in enumerate(columns):
        stats: dict[str, Any] = {}
        if "count" in wanted:
            stats["count"] = {"value": n, "exact": True}
        both = "variance" in wanted
        tail = (1 - LEVEL) / 2 if both else 1 - LEVEL
        if ("sum", c) in by_kind:
            i = by_kind["sum", c]
            noisy_sum = float(opened[i])
            q_sum = noise_quantile(mechanisms[i], n_parties, 1 - LEVEL)
            allowance = n * GRID
            sd = mechanisms[i].noise_sd(n_parties)
            if "sum" in wanted:
                stats["sum"] = {
                    "value": noisy_sum,
                    "noise_std": sd,
                    "ci95": _interval(noisy_sum, q_sum + allowance),
                }
            if "mean" in wanted:
                mean = noisy_sum / n
                stats["mean"] = {
                    "value": mean,
                    "noise_std": sd / n,
                    "ci95": _interval(mean, q_sum / n + GRID, column.lower, column.upper),
                }
            if both:
                j = by_kind["sumsq", c]
                q_s = noise_quantile(mechanisms[i], n_parties, tail) / n
                q_q = noise_quantile(mechanisms[j], n_parties, tail) / n
                centred = noisy_sum / n - column.mid
                variance = float(opened[j]) / n - centred**2
                cap = (column.width / 2) ** 2
                radius = q_q + column.width * q_s + q_s**2 + 8 * GRID
                stats["variance"] = {
                    "value": min(max(variance, 0.0), cap),
                    "raw_value": variance,
                    "noise_std_sum_of_squares": mechanisms[j].noise_sd(n_parties) / n,
                    "ci95": _interval(variance, radius, 0.0, cap),
                }
        if ("histogram", c) in by_kind:
            i = by_kind["histogram", c]
            counts = [float(v) for v in opened[i].flatten()]
            q_h = noise_quantile(mechanisms[i], n_parties, 1 - LEVEL)
            stats["histogram"] = {
                "edges": list(bins or ()),
                "counts": counts,
                "noise_std": mechanisms[i].noise_sd(n_parties),
                "ci95": [_interval(v, q_h + GRID * n, 0.0, float(n)) for v in counts],
            }
        out[column.name] = stats
    return out


# ------------------------------------------------------------------ on shares --


def clamp(x: Any, lower: torch.Tensor, upper: torch.Tensor) -> Any:
    """``lower + relu(x - lower) - relu(x - upper)``, per column, on shares (one relu call)."""
    import crypten

    both = crypten.stack([x - lower, x - upper]).relu()
    return both[0] - both[1] + lower


def histogram(x: Any, edges: torch.Tensor) -> Any:
    """Per column, the counts of bins [a, b): sums of ``(x >= a) - (x >= b)`` on shares."""
    above = x.unsqueeze(-1) >= edges  # (n, C, E), one comparison call
    counts = above.sum(0)  # (C, E)
    return counts[:, :-1] - counts[:, 1:]


def share_columns(session: Session, columns: list[Column]) -> Any:
    """Every owner shares its requested columns: side by side, or rows one after another."""
    crypten = session.crypten
    spec = session.spec
    owners = data_owners(spec)
    vertical = spec.data.partition == "vertical"
    holders = vertical_holders(spec, columns) if vertical else None
    parts, order = [], []
    for k, owner in enumerate(owners):
        if vertical:
            held = [i for i, (holder, _) in enumerate(holders) if holder == k]
            if not held:
                continue
            local = [holders[i][1] for i in held]
            order += held
        else:
            local = [c.index for c in columns]
        mine = None
        if owner.rank == session.rank:
            data = load_local(spec, owner)
            mine = torch.cat([data.x_train, data.x_test])[:, local]
        parts.append(session.share(mine, owner=owner.name, name="columns"))
    if not vertical:
        return crypten.cat(parts, dim=0)
    x = crypten.cat(parts, dim=1)
    inverse = [order.index(i) for i in range(len(columns))]
    return x[:, inverse]


# ------------------------------------------------------------------ plaintext --


def plaintext_stats(spec: Spec) -> dict[str, Any]:
    """The exact statistics of the clamped columns, from the pooled public source."""
    columns = resolve_columns(spec)
    parts = [load_local(spec, owner) for owner in data_owners(spec)]
    if spec.data.partition == "vertical":
        x = torch.cat([torch.cat([p.x_train, p.x_test]) for p in parts], dim=1).double()
    else:
        x = torch.cat([torch.cat([p.x_train, p.x_test]) for p in parts]).double()
    # vertical: the owners' blocks are contiguous and in rank order, so x is in source order
    out: dict[str, Any] = {}
    n = x.shape[0]
    for column in columns:
        raw = x[:, column.index]
        clamped = raw.clamp(column.lower, column.upper)
        stats: dict[str, Any] = {"count": n, "sum": float(clamped.sum())}
        stats["mean"] = float(clamped.mean())
        stats["variance"] = float(((clamped - clamped.mean()) ** 2).mean())
        stats["clamped_rows"] = int(((raw < column.lower) | (raw > column.upper)).sum())
        if spec.stats.bins is not None:
            edges = spec.stats.bins
            stats["histogram"] = [
                int(((raw >= a) & (raw < b)).sum()) for a, b in itertools.pairwise(edges)
            ]
        keep = (*spec.stats.queries, "clamped_rows")
        out[column.name] = {k: v for k, v in stats.items() if k in keep}
    return out


# ------------------------------------------------------------------ protocol --


class DPStats(Protocol):
    """Clamped count, sum, mean, variance and histograms, released with DP noise on shares."""

    name = "dp.stats"

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        require_crypten_parties(cls.name, spec, fail)
        if spec.stats is None:
            raise fail("[stats]", "dp.stats needs a [stats] section: columns, lower, upper")
        if spec.dp is None:
            raise fail(
                "[dp]",
                "dp.stats releases only under differential privacy: add [dp] with epsilon, "
                "delta (and ledger = PATH, one per party, e.g. 'ledgers/{party}.json')",
            )
        require_builtin_source(cls.name, spec, fail)
        if not spec.data.source.startswith("sklearn:"):
            raise fail("[data]", "dp.stats computes statistics of tabular (sklearn:) sources")
        if spec.data.partition not in ("vertical", "horizontal"):
            raise fail("[data]", "dp.stats takes partition = 'vertical' or 'horizontal'")
        if not data_owners(spec):
            raise fail("[[party]]", "dp.stats needs at least one party with role 'data_owner'")
        if not spec.roster.with_role(RECEIVER):
            raise fail("[[party]]", "dp.stats needs at least one party with role 'receiver'")
        try:
            resolve_columns(spec)
        except ValueError as e:
            raise fail("[stats]", str(e)) from None

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        spec = session.spec
        columns = resolve_columns(spec)
        queries = plan_queries(spec, columns)
        owners = column_owners(spec, columns)
        budget = calibrate(spec, len(queries))
        mechanisms = [mechanism_for(spec, q, owners[q.column], budget) for q in queries]
        receivers = [p.name for p in session.roster.with_role(RECEIVER)]
        n_parties = session.world_size
        started = time.perf_counter()
        x = share_columns(session, columns)
        n = int(x.shape[0])
        session.progress("columns shared")
        lower = torch.tensor([c.lower for c in columns])
        upper = torch.tensor([c.upper for c in columns])
        mid = torch.tensor([c.mid for c in columns])
        values: dict[str, Any] = {}
        wanted = {q.kind for q in queries}
        clamped = clamp(x, lower, upper) if wanted & {"sum", "sumsq"} else None
        if "sum" in wanted:
            values["sum"] = clamped.sum(0)
        if "sumsq" in wanted:
            centred = clamped - mid
            values["sumsq"] = (centred * centred).sum(0)
        if "histogram" in wanted:
            values["histogram"] = histogram(x, torch.tensor(spec.stats.bins))
        compute_seconds = time.perf_counter() - started
        opened = {}
        for i, query in enumerate(queries):
            shared = values[query.kind][query.column]
            opened[i] = session.reveal(
                shared, to=receivers, name=query.label(columns[query.column]),
                mechanism=mechanisms[i],
            )  # fmt: skip
        privacy = describe_privacy(spec, columns, queries, mechanisms, budget, n_parties, owners)
        timings = {"compute": compute_seconds, "stats": time.perf_counter() - started}
        if session.name not in receivers:
            return PartyOutput(timings=timings, privacy=privacy)
        results = post_process(
            columns, queries, opened, mechanisms, n=n, n_parties=n_parties,
            wanted=spec.stats.queries, bins=spec.stats.bins,
        )  # fmt: skip
        metrics = {"n": n, "stats": results}
        return PartyOutput(metrics=metrics, timings=timings, privacy=privacy)

    @classmethod
    def plaintext_reference(cls, spec: Spec, party_dirs: dict[str, Path]) -> dict[str, Any]:
        return {"plaintext_stats": plaintext_stats(spec)}


def describe_privacy(
    spec: Spec,
    columns: list[Column],
    queries: list[Query],
    mechanisms: list[Any],
    budget: dict[str, Any],
    n_parties: int,
    owners: list[tuple[str, ...]],
) -> dict[str, Any]:
    """result.json's ``privacy`` block (the same on every compute party)."""
    from secure_ml.release.dp import AGAINST

    dp = spec.dp
    gaussian = spec.stats.mechanism == "gaussian"
    t = mechanisms[0].threshold(n_parties) if mechanisms else dp.collusion_threshold
    per_query = []
    for query, mechanism in zip(queries, mechanisms, strict=True):
        entry = {
            "release": query.label(columns[query.column]),
            "owners": list(owners[query.column]),
            "l1_sensitivity": query.l1,
            "l2_sensitivity": query.l2,
            **mechanism.describe(n_parties),
        }
        per_query.append(entry)
    return {
        "epsilon": dp.epsilon,
        "delta": dp.delta if gaussian else 0.0,
        "accountant": dp.accountant if gaussian else "pure epsilon (Laplace)",
        "composition": f"basic: epsilon and delta split evenly over {len(queries)} releases",
        "neighbouring": NEIGHBOURING,
        "noise_multiplier": budget.get("noise_multiplier"),
        "mechanism": spec.stats.mechanism,
        "collusion_threshold": t,
        "against": AGAINST.format(t=t),
        "epsilon_per_release": budget["epsilon_per_release"],
        "delta_per_release": budget["delta_per_release"],
        "per_query": per_query,
    }
