"""Secret random samples no coalition short of all compute parties knows.

``poisson_mask`` draws a shared 0/1 mask whose entries are independently 1
with a public probability ``rate`` (Poisson subsampling, as DP-SGD's
accountant assumes). Nobody learns which entries are 1: not the parties, not
the dealer, not the receivers.

How, and what each party sends and learns:

1. each party draws, from ``os.urandom``, one 16-bit word per entry and uses
   it as its own XOR share: the shared word ``U`` is the XOR of all of them.
   Nothing is sent. ``U`` is uniform on [0, 2^16) given any ``n - 1`` of the
   words (the missing one flips its bits uniformly), so it is uniform to every
   coalition short of all;
2. the entry is [U < rate * 2^16], by one less-than circuit on the XOR
   shares (``secure_ml.sharing.bits.uniform_below``); the resulting bit is
   converted to an arithmetic share. What is sent: the AND gates' masked
   openings and the dealer's binary triples and bit-conversion tuples; no
   value is opened.

``rate`` is rounded down to the 2^-16 grid (``on_grid``): the mask's
probability is exactly the rounded rate, which is what an accountant must use.
"""

from __future__ import annotations

import math
from typing import Any

#: fractional bits of the shares' fixed-point encoding
_BITS = 16


def on_grid(rate: float) -> float:
    """``rate`` rounded down to a multiple of 2^-16 (at least 2^-16, at most 1)."""
    if not 0 < rate <= 1:
        raise ValueError(f"a sampling rate must be in (0, 1], not {rate!r}")
    return max(1, math.floor(rate * 2**_BITS)) / 2**_BITS


def poisson_mask(crypten: Any, rate: float, shape: tuple[int, ...]) -> Any:
    """A shared mask of ``shape`` (integers 0/1, CrypTen scale 1), each 1 w.p. ``on_grid(rate)``.

    Every compute party must call this at the same point with the same
    arguments (the comparison is a joint computation).
    """
    from secure_ml.sharing.bits import uniform_below

    threshold = round(on_grid(rate) * 2**_BITS)
    return uniform_below(crypten, tuple(shape), threshold, _BITS)
