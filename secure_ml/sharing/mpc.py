"""CrypTen glue: secret-share a party's tensor with every compute party.

Stages of ``share`` (one tensor, owned by one compute party):

1. the owner checks its tensor (finite, inside the fixed-point range) and
   announces its shape, or its refusal: every party learns the shape and
   whether the owner refused, nothing else;
2. if the owner refused, every party raises (the owner the range/data error,
   the others a ``ProtocolAbort`` naming the owner): no party is left waiting;
3. otherwise CrypTen splits the encoded tensor into additive shares mod 2^64;
   each party learns only its own uniformly random share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort, SecureMLError
from secure_ml.sharing.fixed_point import check_encodable

if TYPE_CHECKING:
    from secure_ml.parties import Party


def announce(compute: Callable[[], Any], *, owner: Party, my_rank: int, what: str) -> Any:
    """``owner`` computes a public value and broadcasts it; an error stops everyone.

    If ``compute`` raises a ``SecureMLError`` at the owner, every party raises:
    the owner its own error, the others a ``ProtocolAbort`` naming the owner, so
    no party is left waiting for a value that will never come.
    """
    communicator = load_crypten().communicator.get()
    box: dict[str, Any] | None = None
    error: SecureMLError | None = None
    if my_rank == owner.rank:
        try:
            box = {"value": compute(), "error": None}
        except SecureMLError as e:
            error = e
            box = {"value": None, "error": f"{type(e).__name__}: {e}"}
    box = communicator.broadcast_obj(box, owner.rank)
    if box["error"] is not None:
        if error is not None:
            raise error
        abort = ProtocolAbort(f"party {owner.name} could not provide {what}: {box['error']}")
        abort.echo = True  # the cause is at the owner; the launcher reports that one
        raise abort
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
    plaintext = checked[0] if checked else torch.empty(shape)
    return crypten.cryptensor(plaintext, src=owner.rank)


def publish(value: Any, *, my_rank: int, world_size: int) -> list[Any]:
    """Every compute party announces a public ``value``; all learn every value.

    Use only for values that are public by design (shapes, id sets for row
    alignment, task metadata); everything private goes through ``share``.
    """
    communicator = load_crypten().communicator.get()
    announced = []
    for rank in range(world_size):
        box = {"value": value} if rank == my_rank else None
        announced.append(communicator.broadcast_obj(box, rank)["value"])
    return announced
