"""dp.stats's spec checks: the [stats] section and the protocol's own requirements."""

from __future__ import annotations

import math

import pytest

from secure_ml.errors import SpecError
from secure_ml.protocols.stats import (
    noise_quantile,
    plaintext_stats,
    plan_queries,
    resolve_columns,
)
from secure_ml.spec import spec_from_dict


def spec(**changes):
    raw = {
        "protocol": {"name": "dp.stats"},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "receiver"]},
        ],
        "data": {"source": "sklearn:breast_cancer", "partition": "vertical"},
        "stats": {"columns": ["mean radius", 20], "lower": 0.0, "upper": [30.0, 40.0]},
        "dp": {"epsilon": 1.0, "delta": 1e-5},
    }
    for section, values in changes.items():
        if values is None:
            raw.pop(section)
        elif section == "party":
            raw["party"] = values
        else:
            raw.setdefault(section, {}).update(values)
    return raw


def test_example_shape_is_accepted():
    checked = spec_from_dict(spec(stats={"queries": ["mean", "histogram"], "bins": [0, 10, 20]}))
    assert [c.name for c in resolve_columns(checked)] == ["mean radius", "worst radius"]
    assert checked.stats.bounds() == [(0.0, 30.0), (0.0, 40.0)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stats": {"lower": 30.0}}, r"column 'mean radius': lower = 30 must be below upper = 30"),
        ({"stats": {"lower": [0.0, 50.0]}}, "lower = 50 must be below upper = 40"),
        ({"stats": {"upper": [1.0, 2.0, 3.0]}}, "one per column \\(2 columns\\)"),
        ({"stats": {"queries": ["median"]}}, r"queries = \['median'\]: must be a non-empty list"),
        ({"stats": {"queries": ["histogram"], "bins": [0, 2, 1]}}, "strictly increasing"),
        ({"stats": {"queries": ["histogram"], "bins": [0]}}, "at least 2"),
        ({"stats": {"queries": ["histogram"]}}, "set bins"),
        ({"stats": {"bins": [0, 1]}}, "no 'histogram'"),
        ({"stats": {"columns": ["mean radius", "mean radius"]}}, "without repeated"),
        ({"stats": {"columns": ["no such feature", 1]}}, "'no such feature' is not a feature"),
        ({"stats": {"columns": [0, 30]}}, "column 30 is out of range"),
        ({"stats": {"mechanism": "exponential"}}, "one of 'gaussian', 'laplace'"),
        ({"dp": None}, r"\[dp\]: dp.stats releases only under differential privacy"),
        ({"stats": None}, r"\[stats\]: dp.stats needs a \[stats\] section"),
        ({"party": [{"name": "a", "roles": ["data_owner"]}]}, "'receiver'"),
        ({"data": {"partition": "dirichlet"}}, "'vertical' or 'horizontal'"),
    ],
)
def test_bad_specs_are_refused(changes, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(spec(**changes))


def test_releases_and_sensitivities_under_replace_one_row():
    checked = spec_from_dict(
        spec(stats={"queries": ["mean", "variance", "histogram"], "bins": [0, 10, 20]})
    )
    queries = plan_queries(checked, resolve_columns(checked))
    assert [(q.kind, q.column, q.l1, q.l2) for q in queries] == [
        ("sum", 0, 30.0, 30.0), ("sumsq", 0, 225.0, 225.0), ("histogram", 0, 2.0, math.sqrt(2)),
        ("sum", 1, 40.0, 40.0), ("sumsq", 1, 400.0, 400.0), ("histogram", 1, 2.0, math.sqrt(2)),
    ]  # fmt: skip


def test_plaintext_reference_is_clamped():
    checked = spec_from_dict(spec(stats={"upper": [10.0, 40.0], "queries": ["mean"]}))
    ref = plaintext_stats(checked)["mean radius"]
    assert ref["mean"] == pytest.approx(10.0, abs=0.2) and ref["clamped_rows"] > 500


class _Laplace:
    accounted_scale = 1.0


def test_laplace_quantile_of_one_and_of_a_sum():
    assert noise_quantile(_Laplace(), 1, 0.05) == pytest.approx(math.log(20))
    # a sum of 3 Laplace(1): variance 6; its 95 % quantile lies between the normal's and ln(20) * 3
    q = noise_quantile(_Laplace(), 3, 0.05)
    assert 1.96 * math.sqrt(6) < q < 3 * math.log(20)
