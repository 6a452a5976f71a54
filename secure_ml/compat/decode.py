"""Exact signed fixed-point decoding.

crypten 0.4.1's ``FixedPointEncoder.decode`` floor-divides negative values by
``scale - 1`` instead of ``scale``, so a value just above a negative integer
decodes 1.0 too low (-6.99998 comes back as -8.0). We replace it with an exact
decode: split the integer into quotient and remainder by ``scale`` with floor
division (both exact in int64), then combine them in float64, which represents
every fixed-point value whose integer part fits in 2^37 exactly.
"""

from __future__ import annotations

from types import ModuleType

import torch


def exact_decode(tensor: torch.Tensor | None, scale: int) -> torch.Tensor | None:
    """Decode an int64 fixed-point tensor with the given scale into floats."""
    if tensor is None:
        return None
    if tensor.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"fixed-point decode expects an integer tensor, got {tensor.dtype}")
    if scale == 1:
        return tensor
    quotient = torch.div(tensor, scale, rounding_mode="floor")
    remainder = tensor - quotient * scale  # in [0, scale), exact
    value = quotient.double() + remainder.double() / scale
    return value.to(torch.get_default_dtype())


def apply(crypten: ModuleType) -> None:
    """Install ``exact_decode`` as ``FixedPointEncoder.decode``."""
    encoder_cls = crypten.encoder.FixedPointEncoder
    if getattr(encoder_cls.decode, "_secure_ml_patched", False):
        return

    def decode(self, tensor):
        return exact_decode(tensor, self._scale)

    decode._secure_ml_patched = True
    encoder_cls.decode = decode
