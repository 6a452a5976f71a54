"""Exact truncation: dividing a shared value by a public integer, with the dealer's help.

Every product of two fixed-point values carries ``2 * 16`` fractional bits and
is divided by ``2^16`` afterwards (truncation). CrypTen truncates locally with
two parties (each divides its own share), which is wrong by about ``2^48`` (in
the ring; ``2^32`` in real terms) whenever the two shares wrap around the
ring: probability ``|x| / 2^64`` per element for an encoded value ``x``, i.e.
about ``|a * b| / 2^32`` for a product of reals ``a * b``. With three or more
parties CrypTen's ``truncate`` counts the wraps with the dealer's help, but
assumes that ``x + r`` does not wrap for its random mask ``r``, which fails
with the same probability ``|x| / 2^64``. Neither is exact.

This module replaces both, for the session only, with a truncation that is
exact for every ``|x| < 2^62`` (products ``|a * b| < 2^30``), up to one unit in
the last place. It needs one more bit of headroom than the ring: the value,
shifted by the public offset ``2^62``, has its top bit clear. Stage by stage,
for ``[x] / d`` with a public integer ``d >= 2``:

1. the dealer (TTP, or party 0 with TFP) deals shares of a uniformly random
   ring element ``r``, of its top bit ``m = r >> 63`` and of
   ``q = (r mod 2^63) // d``. With the TTP, every party draws its shares from
   the stream it shares with the dealer; the dealer sends party 0 its shares of
   ``m`` and ``q`` (it learns the tensor size and ``d``, both public).
2. every party sends its share of ``c = x + 2^62 + r`` to the others (one
   opening). ``c`` is uniform whatever ``x``: no party learns anything.
3. locally: with ``c = c_hi * 2^63 + c_lo``, the top bit of
   ``x + 2^62 + (r mod 2^63)`` is ``b = c_hi XOR m`` (linear in ``[m]`` since
   ``c_hi`` is public), so ``x + 2^62 = c_lo + b * 2^63 - (r mod 2^63)`` over
   the integers, and ``[x // d] = c_lo // d + [b] * span - [q] - 2^62 // d``,
   where ``span = (c_lo + 2^63) // d - c_lo // d`` is public. Rounding makes
   the result ``x // d`` give or take 1.

Exact truncation is installed by ``exact_truncation`` (``[mpc]
exact_truncation``, on by default) and used for every world size. Divisions by
anything but a Python integer ``>= 2`` keep CrypTen's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.sharing.patching import patched

#: the dealer request name, and the provider method that asks for it
REQUEST = "trunc"
PROVIDER_METHOD = "trunc_rng"
#: the public shift that clears the top bit of every value in range
OFFSET = 2**62
#: values (in the ring) that truncate exactly: |x| < LIMIT
LIMIT = OFFSET
_TOP = 2**63
_LOW_BITS = 2**63 - 1


# ------------------------------------------------------------ the protocol --


def truncate(x: Any, divisor: int) -> Any:
    """Divide the ArithmeticSharedTensor ``x`` by ``divisor`` in place (module docstring)."""
    crypten = load_crypten()
    ast = crypten.mpc.primitives.ArithmeticSharedTensor
    r, top, q = crypten.mpc.get_default_provider().trunc_rng(x.size(), divisor, device=x.device)
    is_party0 = x.rank == 0
    masked = x.share + r.share
    if is_party0:
        masked += OFFSET
    # an opening of a masked value: c is uniform, so everyone may learn it
    c = ast.from_shares(masked, precision=0).reveal()
    c_hi = (c < 0).long()
    c_lo = c & _LOW_BITS
    low = c_lo.div(divisor, rounding_mode="floor")
    carry = ((c_lo % divisor) + (_TOP % divisor) >= divisor).long()
    span = _TOP // divisor + carry
    b = top.share * (1 - 2 * c_hi)
    if is_party0:
        b += c_hi
    result = b * span - q.share
    if is_party0:
        result += low - OFFSET // divisor
    x.share = result
    return x


def _exact_divisor(x: Any, y: Any) -> int | None:
    """``y`` as the integer exact truncation divides by, or None for CrypTen's path."""
    if isinstance(y, float) and y.is_integer():
        y = int(y)
    if isinstance(y, bool) or not isinstance(y, int) or y < 2:
        return None
    crypten = load_crypten()
    if crypten.communicator.get().get_world_size() < 2 or x.share.is_cuda:
        return None
    return y


# -------------------------------------------------------- the dealt tuples --


def _ttp_trunc_rng(self: Any, size: torch.Size, divisor: int, device: Any = None) -> tuple:
    """TTP client: shares of r, its top bit and (r mod 2^63) // divisor."""
    crypten = load_crypten()
    ttp = crypten.mpc.provider.ttp_provider
    ast = crypten.mpc.primitives.ArithmeticSharedTensor
    generator = ttp.TTPClient.get().get_generator(device=device)
    # looked up at call time, so a replaced ring-element generator applies here too
    r = ttp.generate_random_ring_element(size, generator=generator, device=device)
    if crypten.communicator.get().get_rank() == 0:
        top, q = ttp.TTPClient.get().ttp_request(REQUEST, device, size, divisor).unbind(0)
    else:
        top = ttp.generate_random_ring_element(size, generator=generator, device=device)
        q = ttp.generate_random_ring_element(size, generator=generator, device=device)
    return tuple(ast.from_shares(t, precision=0) for t in (r, top, q))


def _dealer_trunc(self: Any, size: torch.Size, divisor: int) -> torch.Tensor:
    """TTP server: party 0's shares of the top bit and of q, stacked.

    Draws from each party's stream in the order that party draws: r, then
    (parties 1..n-1) their shares of the top bit, then of q.
    """
    r = self._get_additive_PRSS(size)
    top = (r < 0).long()
    q = (r & _LOW_BITS).div(divisor, rounding_mode="floor")
    top0 = top - self._get_additive_PRSS(size, remove_rank=True)
    q0 = q - self._get_additive_PRSS(size, remove_rank=True)
    return torch.stack([top0, q0])


def _tfp_trunc_rng(self: Any, size: torch.Size, divisor: int, device: Any = None) -> tuple:
    """TFP: party 0 draws r and shares r, its top bit and q (other inputs are ignored)."""
    crypten = load_crypten()
    ast = crypten.mpc.primitives.ArithmeticSharedTensor
    r = crypten.common.rng.generate_random_ring_element(size, device=device)
    q = (r & _LOW_BITS).div(divisor, rounding_mode="floor")
    stacked = ast(torch.stack([r, (r < 0).long(), q]), precision=0, src=0)
    return stacked[0], stacked[1], stacked[2]


def answer_shape(size: Any) -> torch.Size:
    """The shape of the dealer's answer to a truncation request (for bulk requests)."""
    return torch.Size((2, *torch.Size(size)))


# ------------------------------------------------------------ installation --


@contextmanager
def exact_truncation(enabled: bool = True) -> Iterator[None]:
    """Truncate exactly inside the block (CrypTen's classes are restored after)."""
    if not enabled:
        yield
        return
    crypten = load_crypten()
    ast = crypten.mpc.primitives.ArithmeticSharedTensor
    original_div_ = ast.__dict__["div_"]

    def div_(self: Any, y: Any) -> Any:
        divisor = _exact_divisor(self, y)
        return original_div_(self, y) if divisor is None else truncate(self, divisor)

    providers = crypten.mpc.provider
    patches = [
        (ast, "div_", div_),
        (ast, "__itruediv__", div_),
        (providers.TrustedThirdParty, PROVIDER_METHOD, _ttp_trunc_rng),
        (providers.TrustedFirstParty, PROVIDER_METHOD, _tfp_trunc_rng),
        (providers.ttp_provider.TTPServer, REQUEST, _dealer_trunc),
    ]
    with patched(patches):
        yield
