"""CKKS parameters from a model's depth and value range, within 128-bit security.

No TenSEAL here (``secure_ml.sharing.he`` holds the only ``import tenseal``):
the spec check and the server's plan choose parameters without it.

The bound on the coefficient modulus comes from the Homomorphic Encryption
Standard (Albrecht et al., 2018, table for ternary secrets, classical 128-bit
security), the same table SEAL enforces: at polynomial degree N the product of
all primes, special prime included, may have at most ``MAX_BITS_128[N]`` bits.

Layout of the chain ``[q0, scale, ..., scale, special]``:

- ``depth`` middle primes of ``scale_bits`` each: every multiplication (by a
  plaintext weight or by another ciphertext) is followed by one rescale, which
  drops one of them;
- ``q0``, the last prime left after ``depth`` rescales, must hold the output:
  a decrypted value v needs ``|v| * 2^scale_bits < q0 / 2`` strictly, and
  SEAL's primes sit just below their power of two, so q0 has ``scale_bits +
  output_bits(bound) + 1 + GUARD_BITS`` bits (at least ``scale_bits + 10``, for
  the precision of small values, and at most 60, SEAL's prime size). The
  guard covers the drift of the true scale (after a rescale it is
  2^(2 scale) / q_i, a little above the 2^scale TenSEAL records) and the
  noise; the same margin applies at every level;
- the special prime (key switching) is as large as q0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from secure_ml.errors import SpecError

#: largest total coefficient-modulus bits per polynomial degree at 128-bit security
MAX_BITS_128: dict[int, int] = {
    1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881,
}  # fmt: skip
#: degrees tried in order, and the scale that goes with each
DEGREES: tuple[int, ...] = (8192, 16384, 32768)
DEFAULT_SCALE_BITS: dict[int, int] = {8192: 30, 16384: 40, 32768: 40}
MAX_PRIME_BITS = 60
#: bits of margin above the worst-case bound at every level (scale drift, noise)
GUARD_BITS = 2
#: headroom of q0 over the scale, for the precision of values near zero
MIN_HEADROOM_BITS = 10


@dataclass(frozen=True)
class CKKSParams:
    """One CKKS parameter set: degree, prime sizes (q0 first, special last), scale."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def depth(self) -> int:
        """Rescales available: the primes between q0 and the special prime."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def total_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    def check_security(self) -> None:
        """Refuse a parameter set below 128-bit security (or one SEAL cannot build)."""
        limit = MAX_BITS_128.get(self.poly_modulus_degree)
        if limit is None:
            raise SpecError(
                f"[he] poly_modulus_degree = {self.poly_modulus_degree}: must be one of "
                f"{', '.join(map(str, MAX_BITS_128))}"
            )
        if self.total_bits > limit:
            raise SpecError(
                f"CKKS parameters below 128-bit security: {self.total_bits} bits of coefficient "
                f"modulus at poly_modulus_degree {self.poly_modulus_degree} (at most {limit}); "
                "use a larger [he] poly_modulus_degree or a smaller scale_bits"
            )
        if any(not 20 <= b <= MAX_PRIME_BITS for b in self.coeff_mod_bit_sizes):
            raise SpecError(f"CKKS primes must have 20..60 bits, got {self.coeff_mod_bit_sizes}")

    def describe(self) -> dict[str, object]:
        """For result.json: the parameters and their security level."""
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
            "depth": self.depth,
            "slots": self.slots,
            "total_modulus_bits": self.total_bits,
            "max_modulus_bits_128": MAX_BITS_128[self.poly_modulus_degree],
            "security_bits": 128,
        }

    def to_message(self) -> dict[str, object]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }

    @classmethod
    def from_message(cls, message: object) -> CKKSParams:
        """Parameters a peer announced, checked for shape and security."""
        try:
            params = cls(
                poly_modulus_degree=int(message["poly_modulus_degree"]),  # type: ignore[index]
                coeff_mod_bit_sizes=tuple(int(b) for b in message["coeff_mod_bit_sizes"]),  # type: ignore[index]
                scale_bits=int(message["scale_bits"]),  # type: ignore[index]
            )
        except (TypeError, KeyError, ValueError):
            raise SpecError(f"malformed CKKS parameters from the server: {message!r}") from None
        params.check_security()
        return params


def output_bits(bounds: Sequence[float]) -> int:
    """Bits above the binary point that the largest of ``bounds`` needs: |v| < 2^bits.

    ``floor(log2(b)) + 1``, not ``ceil``: a bound of exactly 2^k needs k + 1 bits.
    """
    largest = max((abs(b) for b in bounds), default=0.0)
    return math.floor(math.log2(largest)) + 1 if largest >= 1.0 else 0


def choose_params(
    *,
    depth: int,
    level_bits: Sequence[int],
    poly_modulus_degree: int | None = None,
    scale_bits: int | None = None,
) -> CKKSParams:
    """The smallest secure parameter set with ``depth`` rescales for these values.

    ``level_bits[k]`` is ``output_bits`` of the values after the k-th of the
    ``depth`` multiplications (``level_bits[0]``: the inputs): after k rescales
    a value sits under ``q0`` plus ``depth - k`` middle primes, so q0 must
    cover ``level_bits[k] + scale + 1 + GUARD_BITS - scale * (depth - k)`` bits.
    Raises ``SpecError`` naming what to change when nothing fits.
    """
    if len(level_bits) != depth + 1:
        raise ValueError("level_bits needs one entry per level, inputs included")
    degrees = (poly_modulus_degree,) if poly_modulus_degree else DEGREES
    for degree in degrees:
        scale = scale_bits or DEFAULT_SCALE_BITS.get(degree, 40)
        need = max(
            bits + scale + 1 + GUARD_BITS - scale * (depth - k) for k, bits in enumerate(level_bits)
        )
        q0 = max(need, scale + MIN_HEADROOM_BITS)
        if q0 > MAX_PRIME_BITS:
            raise SpecError(
                f"the model's values may reach 2^{max(level_bits)}: too large for CKKS at scale "
                f"2^{scale} (q0 would need {q0} bits, at most {MAX_PRIME_BITS}); lower "
                "[he] input_bound or [he] scale_bits"
            )
        params = CKKSParams(degree, (q0, *([scale] * depth), q0), scale)
        if params.total_bits <= MAX_BITS_128.get(degree, 0):
            params.check_security()
            return params
    where = f"poly_modulus_degree = {poly_modulus_degree}" if poly_modulus_degree else "any degree"
    raise SpecError(
        f"a model of multiplicative depth {depth} does not fit CKKS at 128-bit security with "
        f"{where} (it needs more coefficient-modulus bits than the HE standard allows); "
        "use fewer layers, or a larger [he] poly_modulus_degree"
    )
