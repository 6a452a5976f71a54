"""Standardisation on shares: column means and scales that no party learns.

A scaler is three vectors ``mean``, ``scale`` and ``factor`` with

    z = ((x - mean) * scale) * factor,

``scale`` a power of two ``2^-a`` and ``factor = 1 / (std * scale)`` near 1.
Splitting 1/std this way keeps every fixed-point value well inside its range:
a single ``1/std`` would lose all its digits for a large std (2^-16 is one
step of the encoding) and overflow for a tiny one. ``std`` is kept too, to map
standardised regression outputs back to original units.

``fit_shared`` computes a scaler from shared rows without opening anything:

1. ``mean``: the column sums divided by the public row count.
2. Range reduction (CrypTen's ``inv_sqrt`` starts from a guess that is wrong
   for large inputs, and 16 fractional bits cannot hold a tiny variance): the
   centred rows are scaled by every public power of two ``2^-a`` of
   ``LEVELS``, and each level's mean square ``w_a = var / 4^a`` is computed.
   Levels where the scaled values overflow give garbage, but the level chosen,
   the largest ``a`` with ``w_a >= 1/4`` (so ``w_a`` lies in [1/4, 4)), and
   every level above it are exact. The choice is made with comparisons on
   shares and kept as shared one-hot bits: nobody learns the level.
   Comparison bits are exact integers, so a bit times a garbage value is
   exactly zero.
3. ``factor = 1/sqrt(w)`` by Newton's iteration from a linear guess, which
   converges on [1/4, 4): 2.7e-6 relative in exact arithmetic, a few
   fixed-point steps (~1e-4) on shares (tests/multiparty/test_crypten_ops.py).

Columns whose variance is below ``4^min(LEVELS) / 4`` (std < 2^-9, including
constant columns) get std 1, as ``Standardiser`` does with ``MIN_SHARED_STD``.
Inputs must satisfy ``limit="product"`` (|x| < 2^15), so var < 2^30 and the
top level ``a = 16`` always applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import DataError

#: public exponents a of the range-reduction levels, coarsest first
LEVELS = tuple(range(16, -10, -2))
NEWTON_STEPS = 4
SCALER_FILE = "scaler.pt"


@dataclass
class SharedScaler:
    """Shared per-column ``mean``, ``scale``, ``factor`` and ``std`` (MPCTensors)."""

    mean: Any
    scale: Any
    factor: Any
    std: Any

    def transform(self, x: Any) -> Any:
        """Standardised ``x``: ((x - mean) * scale) * factor, on shares."""
        return ((x - self.mean) * self.scale) * self.factor

    def restore(self, z: Any) -> Any:
        """Original units of standardised ``z``: z * std + mean, on shares."""
        return z * self.std + self.mean

    def columns(self, start: int, stop: int) -> SharedScaler:
        return SharedScaler(*(v[start:stop] for v in self.tensors()))

    def tensors(self) -> tuple[Any, Any, Any, Any]:
        return self.mean, self.scale, self.factor, self.std

    def shares(self) -> dict[str, torch.Tensor]:
        """This party's shares (useless alone), for ``keep``-style files."""
        names = ("mean", "scale", "factor", "std")
        return {n: v.share.clone() for n, v in zip(names, self.tensors(), strict=True)}

    @classmethod
    def from_shares(cls, shares: dict[str, torch.Tensor]) -> SharedScaler:
        tensor = load_crypten().mpc.MPCTensor
        names = ("mean", "scale", "factor", "std")
        return cls(*(tensor.from_shares(shares[n]) for n in names))


def _level(centred: Any, a: int) -> Any:
    """centred * 2^-a: a public shift (exact for a < 0, one truncation for a > 0)."""
    return centred.div(2**a) if a > 0 else centred * (2**-a)


def _as_fixed_point(integers: Any) -> Any:
    """Read a tensor of exact integers k (scale 1) as the fixed-point values k * 2^-16."""
    integers.encoder = load_crypten().encoder.FixedPointEncoder()
    return integers


def inv_sqrt_near_one(w: Any) -> Any:
    """1/sqrt(w) for w in [1/4, 4): Newton from the linear guess 1.47 - 0.28 w."""
    y = w * -0.28 + 1.47
    for _ in range(NEWTON_STEPS):
        y = (y * (3 - w * y.square())).div(2)
    return y


def fit_shared(x: Any) -> SharedScaler:
    """Column scaler of shared rows ``x`` (n x d); see the module docstring."""
    crypten = load_crypten()
    n = x.shape[0]
    mean = x.sum(0).div(n)
    centred = x - mean
    levels = crypten.stack([_level(centred, a) for a in LEVELS])
    w = levels.square().sum(1).div(n)  # [levels, d]
    big = w.ge(0.25)  # exact bits
    higher = [big[0] * 0]
    for i in range(1, len(LEVELS)):
        higher.append(higher[-1] + big[i - 1])
    first = crypten.stack(higher).lt(1)  # no higher level has w >= 1/4
    chosen = big * first  # one-hot (or all zero: tiny variance)
    none = 1 - chosen.sum(0)  # exact 1 where no level applies
    # (adding a scale-1 tensor to a fixed-point one re-encodes it in place: copy)
    w_chosen = (chosen * w).sum(0) + _as_fixed_point(none * 2**16)
    factor = inv_sqrt_near_one(w_chosen)
    shift = torch.tensor([2 ** (16 - a) for a in LEVELS]).reshape(-1, 1)
    unshift = torch.tensor([2 ** (16 + a) for a in LEVELS]).reshape(-1, 1)
    scale = _as_fixed_point((chosen * shift).sum(0) + none * 2**16)
    power = _as_fixed_point((chosen * unshift).sum(0) + none * 2**16)
    std = (w_chosen * factor) * power
    return SharedScaler(mean=mean, scale=scale, factor=factor, std=std)


def split_std(std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plaintext std -> (scale, factor) of the same form as ``fit_shared``'s."""
    a = torch.log2(std.double()).round().clamp(min(LEVELS), max(LEVELS))
    scale = torch.pow(2.0, -a)
    return scale.float(), (1.0 / (std.double() * scale)).float()


def save_scaler(path: Path, scaler: dict[str, Any]) -> Path:
    torch.save(scaler, path)
    return path


def read_scaler(path: Path) -> dict[str, Any] | None:
    """A file written by ``save_scaler``, or None where the party has none."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:
        raise DataError(f"{path}: not a secure_ml scaler file ({e})") from None
