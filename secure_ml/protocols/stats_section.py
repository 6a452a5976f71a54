"""The dp family's spec section: ``[stats]`` (what ``dp.stats`` computes and releases).

Registered here, not in ``secure_ml.spec``, so the family owns its schema;
imported by ``secure_ml.protocols.load_sections`` when a spec is validated.
Light on purpose (no torch, no crypten): ``secure-ml spec check`` imports it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from secure_ml.sections import (
    NUMBER,
    Fail,
    Key,
    Section,
    one_of,
    register_section,
    shown,
)

#: the statistics ``dp.stats`` can release, per column
QUERIES = ("count", "sum", "mean", "variance", "histogram")
MECHANISMS = ("gaussian", "laplace")


@dataclass(frozen=True)
class StatsSpec:
    #: feature names (built-in sources with named features) or 0-based column indices
    columns: tuple[str | int, ...]
    #: public clamp bounds: one number for every column, or one per column
    lower: float | tuple[float, ...]
    upper: float | tuple[float, ...]
    queries: tuple[str, ...] = ("mean",)
    #: public histogram bin edges, strictly increasing (bins are [a, b))
    bins: tuple[float, ...] | None = None
    mechanism: str = "gaussian"

    def bounds(self) -> list[tuple[float, float]]:
        """(lower, upper) of each column, in ``columns`` order."""
        n = len(self.columns)
        lower = _per_column(self.lower, n)
        upper = _per_column(self.upper, n)
        return list(zip(lower, upper, strict=True))


def _per_column(value: float | tuple[float, ...], n: int) -> list[float]:
    if isinstance(value, tuple | list):
        return [float(v) for v in value]
    return [float(value)] * n


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _columns(value: Any) -> str | None:
    ok = all(
        (isinstance(c, str) and c) or (isinstance(c, int) and not isinstance(c, bool) and c >= 0)
        for c in value
    )
    if not value or not ok:
        return "a non-empty list of feature names or column indices >= 0"
    if len(set(value)) != len(value):
        return "a list without repeated columns"
    return None


def _bound(value: Any) -> str | None:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(_is_number(v) for v in values):
        return "a finite number, or a non-empty list of finite numbers (one per column)"
    return None


def _queries(value: Any) -> str | None:
    if not value or any(q not in QUERIES for q in value) or len(set(value)) != len(value):
        return "a non-empty list of distinct queries among " + ", ".join(repr(q) for q in QUERIES)
    return None


def _bins(value: Any) -> str | None:
    if len(value) < 2 or not all(_is_number(v) for v in value):
        return "a list of at least 2 finite numbers (the bin edges)"
    if any(b <= a for a, b in itertools.pairwise(value)):
        return "strictly increasing bin edges"
    return None


def _check(spec: Any, fail: Fail) -> None:
    """Bounds per column and lower < upper; a histogram needs bins."""
    stats = spec.sections.get("stats")
    if stats is None:
        return
    n = len(stats.columns)
    for key in ("lower", "upper"):
        value = getattr(stats, key)
        if isinstance(value, tuple) and len(value) != n:
            raise fail(
                "[stats]",
                f"{key} = {shown(list(value))}: give one number for every column, or one per "
                f"column ({n} columns)",
            )
    for column, (low, high) in zip(stats.columns, stats.bounds(), strict=True):
        if not low < high:
            raise fail(
                "[stats]",
                f"column {column!r}: lower = {low:g} must be below upper = {high:g}",
            )
    if "histogram" in stats.queries and stats.bins is None:
        raise fail("[stats]", "queries has 'histogram': set bins = [edge, edge, ...]")
    if stats.bins is not None and "histogram" not in stats.queries:
        raise fail("[stats]", "bins is set but queries has no 'histogram'; remove bins")


STATS = register_section(
    Section(
        name="stats",
        cls=StatsSpec,
        keys={
            "columns": Key((list,), _columns),
            "lower": Key((*NUMBER, list), _bound),
            "upper": Key((*NUMBER, list), _bound),
            "queries": Key((list,), _queries, items=str),
            "bins": Key((list,), _bins),
            "mechanism": Key((str,), one_of(MECHANISMS)),
        },
        required=("columns", "lower", "upper"),
        check=_check,
        optional=True,
        owner=__name__,
    )
)
