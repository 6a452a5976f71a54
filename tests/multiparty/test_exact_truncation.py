"""Two-party products of large values: exact truncation keeps every element right.

CrypTen's local two-party truncation is off by about 2^32 (in real terms) with
probability about |x * y| / 2^32 per element. Here |x * y| lies in
[2^14, 2^15]: 10^6 products per step give about 5.7 expected failures with
local truncation (so two steps fail with probability 1 - e^-11), none with
the dealer-assisted truncation of ``secure_ml.sharing.truncation``.
"""

from __future__ import annotations

import pytest
import torch
from mpkit import make_spec, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(240)]

ELEMENTS = 1_000_000


def large_operands(seed: int, n: int) -> torch.Tensor:
    """Values with 2^7 <= |v| <= 2^7.5 and random signs, so 2^14 <= |x * y| <= 2^15."""
    g = torch.Generator().manual_seed(seed)
    magnitude = 2.0 ** (7 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64))
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    return magnitude * sign


def encoded(v: torch.Tensor) -> torch.Tensor:
    """What CrypTen encodes (16 fractional bits, toward zero), in float64."""
    return (v * 2**16).long().double() / 2**16


def large_products(session):
    """Two steps of x * y (the first traced, the second from the dealer's bulk pool)."""
    n = ELEMENTS if session.spec.protocol.dealer == "ttp" else ELEMENTS // 10
    x_plain, y_plain = large_operands(1, n), large_operands(2, n)
    x = session.share(x_plain if session.rank == 0 else None, owner="p0", name="x")
    y = session.share(y_plain if session.rank == 1 else None, owner="p1", name="y")
    expected = encoded(x_plain) * encoded(y_plain)
    steps = []
    for remaining in (2, 1):
        live_before = _live_requests(session)
        with session.step("products", remaining):
            product = (x * y).get_plain_text().double()
        error = (product - expected).abs()
        steps.append({"max_error": float(error.max()), "wrong": int((error > 1).sum()),
                      "live_requests": _live_requests(session) - live_before})  # fmt: skip
    return steps


def _live_requests(session) -> int:
    return 0 if session.precompute is None else session.precompute.provider.live_requests


@pytest.mark.parametrize("world", ["ttp", "2pc"])
def test_two_party_products_of_large_values_truncate_exactly(world, tmp_path):
    out = run_parties(large_products, make_spec(world), tmp_path / world)
    for party, steps in out.items():
        for step in steps:
            # one unit in the last place of each operand, times the other's size
            assert step["wrong"] == 0 and step["max_error"] < 1e-2, (party, step)
        if world == "ttp":
            traced, pooled = steps
            assert traced["live_requests"] > 0  # the dealer's live path
            assert pooled["live_requests"] == 0  # every tuple, trunc included, from the pool
