"""The fixed-point range of CrypTen's ring, and the check that enforces it.

CrypTen encodes a real ``x`` as the 64-bit integer ``trunc(x * 2^16)``
(rounded toward zero, computed in ``x``'s own float dtype; 16 fractional
bits, ``cfg.encoder.precision_bits``) and computes modulo 2^64. Two limits
follow:

- encoding: ``|x| * 2^16`` must fit a signed 64-bit integer, so
  ``|x| < 2^47`` (about 1.4e14) or the value wraps around silently;
- multiplication: the product of two encoded values carries 32 fractional bits
  until it is truncated. Exact truncation (``secure_ml.sharing.truncation``,
  ``[mpc] exact_truncation``, on by default) needs one bit of headroom:
  ``|x * y| * 2^32 < 2^62``, i.e. ``|x * y| < 2^30``. Every operand of a
  product must stay below ``2^15`` (32768) for any pair to be safe; that is
  the default limit on shared inputs. (With CrypTen's own truncation a
  product fails with probability about ``|x * y| / 2^32`` per element,
  however small.)

Values beyond a limit raise ``FixedPointRangeError`` instead of wrapping.
"""

from __future__ import annotations

import math

import torch

from secure_ml.errors import DataError, FixedPointRangeError

PRECISION_BITS = 16
ENCODE_LIMIT = 2.0 ** (63 - PRECISION_BITS)
PRODUCT_LIMIT = math.sqrt(2.0 ** (62 - 2 * PRECISION_BITS))
LIMITS = {"product": PRODUCT_LIMIT, "encode": ENCODE_LIMIT}


def check_encodable(
    value: torch.Tensor, *, limit: str = "product", what: str = "value"
) -> torch.Tensor:
    """Return ``value`` as a float tensor, or raise if it cannot be shared exactly.

    ``limit="product"`` (default) keeps any product of two shared values inside
    the ring; ``limit="encode"`` only checks that the value itself encodes.
    """
    if limit not in LIMITS:
        raise ValueError(f"limit must be one of {sorted(LIMITS)}, got {limit!r}")
    tensor = torch.as_tensor(value)
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32, torch.bool)):
        raise DataError(f"{what}: cannot secret-share a tensor of dtype {tensor.dtype}")
    tensor = tensor.to(torch.get_default_dtype()) if not tensor.is_floating_point() else tensor
    if tensor.numel() == 0:
        return tensor
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        index = tuple(int(i) for i in (~finite).nonzero()[0])
        raise DataError(
            f"{what}: contains {tensor[index].item()} at index {index}; "
            "remove or impute NaN/inf before sharing"
        )
    bound = LIMITS[limit]
    peak = float(tensor.abs().max())
    if peak >= bound:
        index = tuple(int(i) for i in (tensor.abs() >= bound).nonzero()[0])
        raise FixedPointRangeError(
            f"{what}: |{tensor[index].item():.6g}| at index {index} is outside CrypTen's "
            f"fixed-point range for limit={limit!r} (|x| < {bound:.6g}: "
            f"{PRECISION_BITS} fractional bits in a 64-bit ring); rescale or standardise "
            "the data first"
        )
    return tensor
