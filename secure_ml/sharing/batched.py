"""Independent products opened together, and gradients nobody needs skipped.

A Beaver multiplication of shared ``x`` and ``y`` opens ``x - a`` and
``y - b``: one round. CrypTen's autograd computes the two products of a
matmul's backward pass (the gradient for each input) one after the other, so
two rounds, and it computes both even when one input is data that needs no
gradient. Here:

- ``products`` runs several independent Beaver multiplications with one
  opening for all of them (one round, the same bytes);
- while ``batched_openings`` is on, the backward passes of ``matmul`` and
  ``mul`` compute only the gradients of inputs that require one, and open the
  products they need together.

What each party sends and learns is what CrypTen's Beaver protocol sends and
learns (masked differences, uniformly random); only the grouping changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from secure_ml.compat import load_crypten


def products(op: str, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
    """``x.op(y)`` for every pair; pairs of shared tensors share one opening."""
    crypten = load_crypten()
    mpc = crypten.mpc.MPCTensor
    shared = [i for i, (x, y) in enumerate(pairs) if isinstance(x, mpc) and isinstance(y, mpc)]
    results: list[Any] = [None] * len(pairs)
    for i, (x, y) in enumerate(pairs):
        if i not in shared:
            results[i] = getattr(x, op)(y)  # a public operand needs no opening
    if len(shared) == 1:
        x, y = pairs[shared[0]]
        results[shared[0]] = getattr(x, op)(y)
    elif shared:
        raw = _beaver_many(op, [(pairs[i][0]._tensor, pairs[i][1]._tensor) for i in shared])
        for i, product in zip(shared, raw, strict=True):
            results[i] = _rescaled(pairs[i][0], pairs[i][1], product)
    return results


def _beaver_many(op: str, pairs: list[tuple[Any, Any]]) -> list[Any]:
    """CrypTen's Beaver protocol for many pairs, with one opening for all."""
    import torch

    crypten = load_crypten()
    beaver = crypten.mpc.primitives.beaver
    arithmetic = crypten.mpc.primitives.ArithmeticSharedTensor
    provider = crypten.mpc.get_default_provider()
    triples = [provider.generate_additive_triple(x.size(), y.size(), op, device=x.device)
               for x, y in pairs]  # fmt: skip
    masked = []
    involved = [t for (x, y), (a, b, _) in zip(pairs, triples, strict=True) for t in (a, b, x, y)]
    with beaver.IgnoreEncodings(involved):
        for (x, y), (a, b, _) in zip(pairs, triples, strict=True):
            masked += [x - a, y - b]
        opened = arithmetic.reveal_batch(masked)
    out = []
    for i, (a, b, c) in enumerate(triples):
        epsilon, delta = opened[2 * i], opened[2 * i + 1]
        # z = c + epsilon * b + a * delta + epsilon * delta (party 0 adds the public term)
        c._tensor += getattr(torch, op)(epsilon, b._tensor)
        c._tensor += getattr(torch, op)(a._tensor, delta)
        c += getattr(torch, op)(epsilon, delta)
        out.append(c)
    return out


def _rescaled(x: Any, y: Any, product: Any) -> Any:
    """Wrap a raw product like ``ArithmeticSharedTensor`` does (one truncation)."""
    x_share, y_share = x._tensor, y._tensor
    result = x_share.shallow_copy()
    result.share = product.share
    if x_share.encoder.scale > 1 and y_share.encoder.scale > 1:
        result.div_(x_share.encoder.scale)
    elif y_share.encoder.scale > 1:
        result.encoder = y_share.encoder
    wrapped = x.shallow_copy()
    wrapped._tensor = result
    return wrapped


def _needs_grad(value: Any) -> bool:
    return bool(getattr(value, "requires_grad", False))


def _matmul_backward(ctx: Any, grad_output: Any) -> tuple[Any, Any]:
    """CrypTen's matmul backward, minus unneeded gradients, in one opening."""
    crypten = load_crypten()
    inverse_broadcast = crypten.gradients._inverse_broadcast
    self_, other = ctx.saved_tensors
    self_size, other_size = self_.size(), other.size()
    if self_.dim() < 2:  # vectors as matrices, as CrypTen does
        self_, grad_output = self_.unsqueeze(0), grad_output.unsqueeze(0)
    if other.dim() < 2:
        other, grad_output = other.unsqueeze(1), grad_output.unsqueeze(1)
    wanted = {"self": _needs_grad(self_), "other": _needs_grad(other)}
    pairs = []
    if wanted["self"]:
        pairs.append((grad_output, other.transpose(-2, -1)))
    if wanted["other"]:
        pairs.append((self_.transpose(-2, -1), grad_output))
    made = iter(products("matmul", pairs))
    grads = []
    for name, size in (("self", self_size), ("other", other_size)):
        if not wanted[name]:
            grads.append(None)  # CrypTen drops a gradient for an input without requires_grad
            continue
        grad = next(made)
        if len(size) < 2:
            grad = grad.squeeze()
            grad = grad.unsqueeze(0) if grad.dim() < 1 else grad
        grads.append(inverse_broadcast(grad, size))
    return tuple(grads)


def _mul_backward(ctx: Any, grad_output: Any) -> tuple[Any, Any]:
    crypten = load_crypten()
    inverse_broadcast = crypten.gradients._inverse_broadcast
    self_, other = ctx.saved_tensors
    wanted = [_needs_grad(self_), _needs_grad(other)]
    pairs = [(grad_output, o) for o, w in ((other, wanted[0]), (self_, wanted[1])) if w]
    made = iter(products("mul", pairs))
    sizes = (self_.size(), other.size())
    return tuple(
        inverse_broadcast(next(made), size) if w else None
        for w, size in zip(wanted, sizes, strict=True)
    )


@contextmanager
def batched_openings(enabled: bool = True) -> Iterator[None]:
    """Use the batched backward passes of matmul and mul inside the block."""
    if not enabled:
        yield
        return
    gradients = load_crypten().gradients
    patched = {gradients.AutogradMatMul: _matmul_backward, gradients.AutogradMul: _mul_backward}
    originals = {cls: cls.__dict__["backward"] for cls in patched}
    for cls, backward in patched.items():
        cls.backward = staticmethod(backward)
    try:
        yield
    finally:
        for cls, backward in originals.items():
            cls.backward = backward
