"""Shares made outside CrypTen (input parties): they sum to CrypTen's encoding."""

from __future__ import annotations

import pytest
import torch

from secure_ml.errors import DataError, FixedPointRangeError
from secure_ml.sharing.inputs import make_shares


@pytest.mark.parametrize("parties", [1, 2, 3])
def test_shares_sum_to_the_fixed_point_encoding(parties):
    value = torch.tensor([[1.5, -2.25], [0.0, 1e-4]])
    shares = make_shares(value, parties)
    assert len(shares) == parties and all(s.dtype == torch.long for s in shares)
    total = torch.zeros_like(shares[0])
    for share in shares:
        total += share  # wraps mod 2^64, as CrypTen's ring does
    assert torch.equal(total, (value * 65536).long())  # CrypTen's encoder: toward zero


def test_shares_look_random_and_differ_between_calls():
    value = torch.zeros(1000)
    first, again = make_shares(value, 2), make_shares(value, 2)
    assert not torch.equal(first[0], again[0])
    # 64 random bits an element: about half the values negative, few repeats
    assert 350 < int((first[0] < 0).sum()) < 650 and first[0].unique().numel() == 1000


def test_bad_inputs_are_refused_before_any_share_exists():
    with pytest.raises(DataError, match="NaN"):
        make_shares(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(FixedPointRangeError, match="fixed-point range"):
        make_shares(torch.tensor([40000.0]), 2)
    with pytest.raises(ValueError, match="at least one compute party"):
        make_shares(torch.ones(2), 0)
