"""CrypTen glue: secret-share a party's tensor with every compute party.

Stages of ``share`` (one tensor, owned by one compute party):

1. the owner checks its tensor (finite, inside the fixed-point range) and
   announces its shape, or its refusal: every party learns the shape and
   whether the owner refused, nothing else (a refusal carries only the
   error's class, never its text: the text names the offending value);
2. if the owner refused, every party raises (the owner the range/data error
   with the value and its index, in its own log only; the others a
   ``ProtocolAbort`` naming the owner and the kind of failure): no party is
   left waiting;
3. otherwise CrypTen splits the encoded tensor into additive shares mod 2^64;
   each party learns only its own uniformly random share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import (
    DataError,
    DependencyError,
    FixedPointRangeError,
    ProtocolAbort,
    SecureMLError,
    SpecError,
)
from secure_ml.sharing.fixed_point import check_encodable

if TYPE_CHECKING:
    from secure_ml.parties import Party


#: what a peer is told about an owner's error: its class and a fixed text. The
#: owner's own message stays in the owner's log: it may name a private value,
#: its row and its column.
PUBLIC_FAILURES: dict[type[SecureMLError], str] = {
    FixedPointRangeError: "a value is outside CrypTen's fixed-point range",
    DataError: "its data failed validation (e.g. NaN or infinity, a bad file, a bad shape)",
    SpecError: "its part of the spec cannot be run (e.g. an unsupported model)",
    DependencyError: "a package it needs is missing",
    SecureMLError: "it stopped with an error",
}


def public_kind(error: SecureMLError) -> str:
    """The name of ``error``'s nearest class in ``PUBLIC_FAILURES`` (what peers learn)."""
    return next(cls.__name__ for cls in type(error).__mro__ if cls in PUBLIC_FAILURES)


def refusal(owner: Party, what: str, kind: Any) -> ProtocolAbort:
    """The error a peer raises when ``owner`` announced a failure of ``kind``."""
    # the kind comes from a peer: only our own fixed texts are ever printed
    known = {cls.__name__: text for cls, text in PUBLIC_FAILURES.items()}
    detail = f"{kind}: {known[kind]}" if kind in known else "an error of an unknown kind"
    abort = ProtocolAbort(
        f"party {owner.name} could not provide {what}: {detail}; the details (which may "
        f"name private values) are only in {owner.name}'s own log"
    )
    abort.echo = True  # the cause is at the owner; the launcher reports that one
    return abort


def announce(compute: Callable[[], Any], *, owner: Party, my_rank: int, what: str) -> Any:
    """``owner`` computes a public value and broadcasts it; an error stops everyone.

    If ``compute`` raises a ``SecureMLError`` at the owner, every party raises:
    the owner its own error, the others a ``ProtocolAbort`` naming the owner and
    the kind of error (``public_kind``), never its message, so no party is left
    waiting for a value that will never come and no private value leaves the
    owner.
    """
    communicator = load_crypten().communicator.get()
    box: dict[str, Any] | None = None
    error: SecureMLError | None = None
    if my_rank == owner.rank:
        try:
            box = {"value": compute(), "error": None}
        except SecureMLError as e:
            error = e
            box = {"value": None, "error": public_kind(e)}
    box = communicator.broadcast_obj(box, owner.rank)
    if error is not None:
        raise error
    if not isinstance(box, dict) or set(box) != {"value", "error"}:
        raise ProtocolAbort(f"party {owner.name} announced {what} in an unexpected form")
    if box["error"] is not None:
        raise refusal(owner, what, box["error"])
    return box["value"]


def share(
    value: torch.Tensor | None,
    *,
    owner: Party,
    my_rank: int,
    limit: str = "product",
    what: str = "value",
) -> Any:
    """Secret-share ``value`` (given by ``owner``; ``None`` elsewhere) as an MPCTensor."""
    crypten = load_crypten()
    if my_rank == owner.rank and value is None:
        raise ValueError(f"party {owner.name} owns {what} but passed None to share()")
    checked: list[torch.Tensor] = []

    def shape_of_checked_value() -> tuple[int, ...]:
        checked.append(check_encodable(value, limit=limit, what=f"{what} of {owner.name}"))
        return tuple(checked[0].shape)

    shape = announce(shape_of_checked_value, owner=owner, my_rank=my_rank, what=what)
    if not isinstance(shape, tuple) or not all(_is_dim(d) for d in shape):
        shown = repr(shape)[:80]
        raise ProtocolAbort(f"party {owner.name} announced {shown} as the shape of {what}")
    plaintext = checked[0] if checked else torch.empty(shape)
    return crypten.cryptensor(plaintext, src=owner.rank)


def _is_dim(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def publish(value: Any, *, my_rank: int, world_size: int) -> list[Any]:
    """Every compute party announces a public ``value``; all learn every value.

    Use only for values that are public by design (shapes, id sets for row
    alignment, task metadata); everything private goes through ``share``.
    """
    communicator = load_crypten().communicator.get()
    announced = []
    for rank in range(world_size):
        box = {"value": value} if rank == my_rank else None
        box = communicator.broadcast_obj(box, rank)
        if not isinstance(box, dict) or set(box) != {"value"}:
            raise ProtocolAbort(f"the party of rank {rank} published a value in an unexpected form")
        announced.append(box["value"])
    return announced
