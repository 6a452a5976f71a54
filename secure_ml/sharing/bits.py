"""Bit-level tricks on CrypTen shares that save comparisons.

A CrypTen comparison converts its operand from arithmetic to binary (XOR)
shares, an adder circuit per pair of parties, then takes one bit back. Where
many comparisons share one operand, or the operand can be born in binary
form, one conversion does the work of many:

- ``at_least_powers_of_two(x, exponents)``: [x >= 2^j] for several j from
  ONE conversion: after it, a prefix OR over the bits (six AND rounds on one
  64-bit word per element) sets bit j exactly when x >= 2^j (x >= 0), and the
  wanted bits return to arithmetic shares together, one bit each.
- ``uniform_below(shape, threshold, n_bits)``: a shared 0/1 tensor, 1 with
  probability threshold / 2^n_bits, from random words every party draws as
  its own XOR share (no conversion at all), and one less-than circuit.

What they send is what CrypTen's own binary operations send (AND gates with
the dealer's binary triples, the bit conversions' tuples); nothing is opened.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: the prefix OR's shifts: after them, bit j is the OR of bits j..63
_PREFIX_SHIFTS = (1, 2, 4, 8, 16, 32)


def _as_arithmetic_bits(bits: Any) -> Any:
    """The 0/1 XOR-shared ``bits`` (a BinarySharedTensor) as an arithmetic MPCTensor at
    scale 1, like CrypTen's ``_ltz`` returns; one single-bit conversion."""
    from crypten.mpc import MPCTensor
    from crypten.mpc.ptype import ptype

    # precision 0 on both sides: the conversion's rescaling (arithmetic scale over
    # binary scale) is then 1
    binary = MPCTensor.from_shares(bits.share, precision=0, ptype=ptype.binary)
    return binary._to_ptype(ptype.arithmetic, bits=1, precision=0)


def at_least_powers_of_two(x: Any, exponents: Sequence[int]) -> Any:
    """[x >= 2^j] for each j in ``exponents`` (last dimension), 0/1 at scale 1.

    ``x`` must be >= 0 (an arithmetic MPCTensor); ``j`` counts in value units,
    so j may be negative down to minus the fractional bits. One A2B
    conversion and six AND rounds, whatever the number of exponents.
    """
    from crypten.mpc.primitives.binary import BinarySharedTensor
    from crypten.mpc.ptype import ptype

    fractional = round(math.log2(x.encoder.scale))
    positions = [j + fractional for j in exponents]
    if not all(0 <= p < 63 for p in positions):
        raise ValueError(f"exponents {list(exponents)} are outside the encoding's 63 bits")
    prefix = x._to_ptype(ptype.binary)._tensor
    for shift in _PREFIX_SHIFTS:
        prefix = prefix | (prefix >> shift)
    bits = BinarySharedTensor.stack([prefix >> p for p in positions], dim=-1) & 1
    return _as_arithmetic_bits(bits)


def _own_words(shape: tuple[int, ...], n_bits: int) -> torch.Tensor:
    """This party's XOR share: uniform ``n_bits``-bit integers from the OS CSPRNG."""
    count = math.prod(shape)
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(64 - n_bits)
    return torch.from_numpy(raw.astype(np.int64)).reshape(shape)


def uniform_below(crypten: Any, shape: tuple[int, ...], threshold: int, n_bits: int) -> Any:
    """A shared 0/1 tensor of ``shape``, each entry 1 w.p. ``threshold / 2^n_bits``.

    Each party's random ``n_bits``-bit words are its XOR share of ``U``, which
    is uniform to any coalition short of all parties; the entry is [U <
    threshold], by one less-than circuit against the public threshold (party
    0 holds it as its XOR share, the others zero). Every compute party must
    call this at the same point with the same arguments.
    """
    from crypten.mpc.primitives import circuit
    from crypten.mpc.primitives.binary import BinarySharedTensor

    if not 0 < n_bits <= 62 or not 0 <= threshold <= 2**n_bits:
        raise ValueError(f"threshold {threshold} must be in [0, 2^{n_bits}], n_bits in 1..62")
    words = BinarySharedTensor.from_shares(_own_words(tuple(shape), n_bits), precision=0)
    rank = crypten.communicator.get().get_rank()
    public = torch.full(tuple(shape), threshold if rank == 0 else 0, dtype=torch.long)
    bound = BinarySharedTensor.from_shares(public, precision=0)
    return _as_arithmetic_bits(circuit.lt(words, bound))
