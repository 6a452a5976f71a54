"""The ``dp_stats_breast_cancer`` bench task: what the collusion threshold costs in utility.

``dp.stats`` releases statistics computed on shares; each compute party adds
its own noise to its own share, variance sigma^2 / (n - t) for collusion
threshold t, so the released value carries sigma * sqrt(n / (n - t)) where
sigma is what the accountant calibrated. The central baseline is one trusted
curator that computes the exact clamped statistics and adds the calibrated
noise once (sigma itself, no MPC): the same mechanism, grid and budget split
as ``dp.stats``, with one party and threshold 0.

The pure functions here turn a result (``privacy.per_query``,
``metrics.stats``) and the exact statistics into the record's fields.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.bench.names import DP_ERROR
from secure_ml.spec import spec_from_dict

if TYPE_CHECKING:
    from secure_ml.bench.settings import Settings

#: the threshold comparison needs n = 3 (t = 1 and t = 2 differ only there and above)
DP_PARTIES = 3
#: public clamp bounds per column (as in protocols/dp_stats_breast_cancer.toml)
DP_COLUMNS = {"mean radius": (0.0, 30.0), "texture error": (0.0, 5.0),
              "worst smoothness": (0.0, 0.25)}  # fmt: skip
DP_BINS = [0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0]
DP_QUERIES = ["mean", "variance", "histogram"]
DP_EPSILON, DP_DELTA = 1.0, 1e-5


def dp_stats_spec(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
    """The dp.stats spec; ``n`` is ignored: always DP_PARTIES compute parties.

    dp.stats refuses to release without a budget ledger per owner, so each run
    gets fresh ledgers in its own scratch folder: no budget carries over.
    """
    parties = [{"name": f"party{i}", "roles": ["data_owner"]} for i in range(DP_PARTIES)]
    parties[-1]["roles"].append("receiver")
    return {
        "protocol": {"name": "dp.stats", "dealer": "ttp", "seed": s.seed},
        "party": parties,
        "data": {"source": "sklearn:breast_cancer", "partition": "vertical"},
        "stats": {
            "columns": list(DP_COLUMNS),
            "lower": [low for low, _ in DP_COLUMNS.values()],
            "upper": [high for _, high in DP_COLUMNS.values()],
            "queries": list(DP_QUERIES),
            "bins": list(DP_BINS),
        },
        "dp": {
            "epsilon": DP_EPSILON,
            "delta": DP_DELTA,
            "ledger": str(scratch / "ledgers" / "{party}.json"),
        },
    }


# ------------------------------------------------------------ record fields --


def noise_fields(per_query: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-release accounted and total sigma, and their largest ratio (total / accounted)."""
    accounted = [q["accounted_sigma"] for q in per_query]
    total = [q["total_sigma"] for q in per_query]
    return {
        "noise_releases": [q["release"] for q in per_query],
        "noise_sigma_accounted": accounted,
        "noise_sigma_total": total,
        # the same for every release (sqrt(n / (n - t))); max, so a stray one would show
        "noise_ratio_to_central": max(t / a for a, t in zip(accounted, total, strict=True)),
    }


def mean_error(released: dict[str, Any], exact: dict[str, Any]) -> float:
    """Mean over columns of |released mean - exact clamped mean| / column width.

    Dividing by the public width puts columns of different units on one scale.
    """
    errors = [
        abs(released[name]["mean"]["value"] - exact[name]["mean"]) / (high - low)
        for name, (low, high) in DP_COLUMNS.items()
    ]
    return sum(errors) / len(errors)


def histogram_error(released: dict[str, Any], exact: dict[str, Any], n: int) -> float:
    """Mean over columns and bins of |released count - exact count| / n (rows)."""
    errors = [
        abs(noisy - true) / n
        for name in DP_COLUMNS
        for noisy, true in zip(
            released[name]["histogram"]["counts"], exact[name]["histogram"], strict=True
        )
    ]
    return sum(errors) / len(errors)


def utility_fields(
    per_query: list[dict[str, Any]], released: dict[str, Any], exact: dict[str, Any], n: int
) -> dict[str, Any]:
    """Everything a DP record adds: noise scales, threshold and the observed errors."""
    return {
        **noise_fields(per_query),
        "collusion_threshold": per_query[0]["collusion_threshold"],
        # the bench's finish() copies it into error_vs_plain
        DP_ERROR: mean_error(released, exact),
        "histogram_error_rel_rows": histogram_error(released, exact, n),
    }


def from_result(result: dict[str, Any]) -> dict[str, Any]:
    """A dp.stats result.json's DP fields (the receiver's release against the exact values)."""
    metrics = result["metrics"]
    return utility_fields(
        result["privacy"]["per_query"], metrics["stats"], metrics["plaintext_stats"], metrics["n"]
    )


# ------------------------------------------------------- central baseline --


def central_dp_stats(s: Settings, scratch: Path) -> dict[str, Any]:
    """One trusted curator: exact clamped statistics plus the calibrated noise, added once.

    The same queries, budget split, noise multiplier, grid and sampler as
    dp.stats, with one party at threshold 0: its total sigma is the accounted one.
    """
    from secure_ml.protocols import stats

    raw = dp_stats_spec(DP_PARTIES, s, scratch)
    raw["dp"] = {**raw["dp"], "collusion_threshold": 0}
    spec = spec_from_dict(raw)
    started = time.perf_counter()
    exact = _exact_stats(raw)
    columns = stats.resolve_columns(spec)
    queries = stats.plan_queries(spec, columns)
    budget = stats.calibrate(spec, len(queries))
    mechanisms = [stats.mechanism_for(spec, q, ("curator",), budget) for q in queries]
    n = exact[columns[0].name]["count"]
    opened = {
        i: _exact_value(q, columns[q.column], exact, n) + _grid_noise(m, _exact_shape(q))
        for i, (q, m) in enumerate(zip(queries, mechanisms, strict=True))
    }
    released = stats.post_process(
        columns, queries, opened, mechanisms, n=n, n_parties=1,
        wanted=spec.stats.queries, bins=spec.stats.bins,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    per_query = [{"release": q.label(columns[q.column]), **m.describe(1)}
                 for q, m in zip(queries, mechanisms, strict=True)]  # fmt: skip
    return {"wall_s": seconds, "accuracy": None, **utility_fields(per_query, released, exact, n)}


def _exact_stats(raw: dict[str, Any]) -> dict[str, Any]:
    """dp.stats' plaintext reference, with the count and sum the curator also needs."""
    from secure_ml.protocols.stats import plaintext_stats

    wider = {**raw, "stats": {**raw["stats"], "queries": [*DP_QUERIES, "count", "sum"]}}
    return plaintext_stats(spec_from_dict(wider))


def _exact_shape(query: Any) -> tuple[int, ...]:
    return (len(DP_BINS) - 1,) if query.kind == "histogram" else ()


def _exact_value(query: Any, column: Any, exact: dict[str, Any], n: int) -> torch.Tensor:
    """The exact value dp.stats would open for ``query`` (before its noise)."""
    values = exact[column.name]
    if query.kind == "sum":
        return torch.tensor(float(values["sum"]), dtype=torch.float64)
    if query.kind == "sumsq":  # centred on the midpoint: n (variance + (mean - mid)^2)
        centred = values["mean"] - column.mid
        return torch.tensor(n * (values["variance"] + centred**2), dtype=torch.float64)
    return torch.tensor(values["histogram"], dtype=torch.float64)


def _grid_noise(mechanism: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise GaussianOnShares.perturb draws with n - t = 1: sigma on the 2^16 grid."""
    from secure_ml.release.noise import discrete_gaussian

    scale = 2**16
    sigma_grid = mechanism.noise_multiplier * math.ceil(mechanism.sensitivity * scale)
    draws = discrete_gaussian(max(1, math.ceil(sigma_grid)), shape)
    return draws.to(torch.float64) / scale
