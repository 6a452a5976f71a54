from __future__ import annotations

import pytest
import torch

from secure_ml.errors import DataError, FixedPointRangeError
from secure_ml.sharing.fixed_point import ENCODE_LIMIT, PRODUCT_LIMIT, check_encodable


def test_limits_follow_from_16_fractional_bits_in_64_bit_ring():
    assert ENCODE_LIMIT == 2.0**47
    assert pytest.approx(2.0**62) == PRODUCT_LIMIT**2 * 2**32  # exact truncation's headroom


def test_values_inside_the_product_range_pass_unchanged():
    x = torch.tensor([[-32000.0, 0.5], [3.0, 32000.0]])
    assert torch.equal(check_encodable(x), x)


def test_a_value_whose_square_overflows_is_refused_with_its_index():
    x = torch.tensor([1.0, 2.0, 50_000.0])
    with pytest.raises(FixedPointRangeError, match=r"index \(2,\).*limit='product'"):
        check_encodable(x, what="features")


def test_encode_limit_allows_large_values_that_are_only_added():
    x = torch.tensor([1e9])
    assert check_encodable(x, limit="encode").item() == 1e9
    with pytest.raises(FixedPointRangeError):
        check_encodable(torch.tensor([2.0**48]), limit="encode")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_data_errors(bad):
    with pytest.raises(DataError, match="NaN/inf"):
        check_encodable(torch.tensor([0.0, bad]))


def test_integers_are_encoded_as_floats_and_strings_are_refused():
    assert check_encodable(torch.tensor([1, 2])).dtype == torch.get_default_dtype()
    with pytest.raises(DataError, match="dtype"):
        check_encodable(torch.tensor([1 + 1j]))
