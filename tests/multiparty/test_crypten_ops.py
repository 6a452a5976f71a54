"""CrypTen arithmetic on real, freshly started processes matches torch."""

from __future__ import annotations

import pytest
import torch
from mpkit import make_spec, run_parties

from secure_ml.sharing.scaling import fit_shared

# Tolerances: one fixed-point step is 2^-16 ~ 1.5e-5; a product truncates once
# more; sigmoid uses CrypTen's exp/reciprocal approximations.
TOLERANCE = {
    "add": 1e-4, "sub": 1e-4, "mul": 1e-3, "matmul": 5e-2, "lt": 0.0, "gt": 0.0,
    "relu": 1e-4, "sigmoid": 5e-3, "neg_decode": 1e-4,
    # relative errors of the range-reduced 1/std and std (secure_ml.sharing.scaling)
    "inv_std": 3e-4, "std": 3e-4, "constant_std": 3e-4,
}  # fmt: skip
#: every std the shared scaler resolves: 2^-8 .. just below 2^15, the largest
#: that rows inside the product limit (|x| < 2^15, offsets of +-100 below) allow
STDS = [2.0**k for k in range(-8, 15)] + [2.0**15 - 256]


def scaler_columns() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows per column, +-std around an offset: population std = std exactly."""
    stds = torch.tensor([*STDS, 0.0])
    offset = torch.linspace(-100, 100, len(stds))
    return torch.stack([offset + stds, offset - stds]), stds


def ops_on_every_party(session):
    torch.manual_seed(0)  # every party draws the same public test data
    x = torch.randn(8, 5)
    y = torch.randn(8, 5)
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)
    near_negative_ints = torch.tensor([-6.99998, -2.99999, -0.99999, -100.00001])
    columns, stds = scaler_columns()
    last = session.roster.parties[-1].name
    own = session.name == "p0"
    sx = session.share(x if own else None, owner="p0")
    sy = session.share(y if session.name == last else None, owner=last)
    sa = session.share(a if own else None, owner="p0")
    sb = session.share(b if session.name == last else None, owner=last)
    sn = session.share(near_negative_ints if own else None, owner="p0")
    scaler = fit_shared(session.share(columns if own else None, owner="p0"))
    resolved = stds[:-1]
    opened = {
        "add": (sx + sy, x + y),
        "sub": (sx - sy, x - y),
        "mul": (sx * sy, x * y),
        "matmul": (sa.matmul(sb), a @ b),
        "lt": (sx < sy, (x < y).float()),
        "gt": (sx > 0.1, (x > 0.1).float()),
        "relu": (sx.relu(), x.relu()),
        "sigmoid": (sx.sigmoid(), x.sigmoid()),
        "neg_decode": (sn, near_negative_ints),
        "constant_std": (scaler.std[-1:], torch.ones(1)),  # a constant column: std 1
    }
    errors = {}
    # 1/std = scale * factor, multiplied in the clear: a shared 1/std of a large
    # column would be a few fixed-point steps (the reason it is kept in two parts)
    scale = session.reveal(scaler.scale, to=["p0"], name="inv_std")
    factor = session.reveal(scaler.factor, to=["p0"], name="inv_std")
    if scale is not None:
        errors["inv_std"] = float((scale[:-1] * factor[:-1] * resolved - 1).abs().max())
    std = session.reveal(scaler.std[:-1], to=["p0"], name="std")
    if std is not None:  # relative above 1, absolute below (16 fractional bits)
        errors["std"] = float(((std - resolved).abs() / resolved.clamp(min=1)).max())
    for name, (shared, expected) in opened.items():
        got = session.reveal(shared, to=["p0"], name=name)
        if got is not None:
            errors[name] = float((got - expected).abs().max())
    return errors


@pytest.mark.multiparty
@pytest.mark.timeout(180)
def test_ops_match_torch(world, tmp_path):
    results = run_parties(ops_on_every_party, make_spec(world), tmp_path)
    errors = results["p0"]
    assert set(errors) == set(TOLERANCE)
    for name, error in errors.items():
        assert error <= TOLERANCE[name], f"{name}: max error {error} > {TOLERANCE[name]}"
    # the other parties never received any of the opened values
    assert all(results[p] == {} for p in results if p != "p0")
