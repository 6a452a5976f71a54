"""CrypTen glue: secret-share a party's tensor with every compute party.

Stages of ``share`` (one tensor, owned by one compute party):

1. the owner checks its tensor (finite, inside the fixed-point range) and
   broadcasts a header ``{shape, error}``: every party learns the shape and
   whether the owner refused, nothing else;
2. if the owner refused, every party raises (the owner the range/data error,
   the others a ``ProtocolAbort`` naming the owner): no party is left waiting;
3. otherwise CrypTen splits the encoded tensor into additive shares mod 2^64;
   each party learns only its own uniformly random share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort, SecureMLError
from secure_ml.sharing.fixed_point import check_encodable

if TYPE_CHECKING:
    from secure_ml.parties import Party


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
    communicator = crypten.communicator.get()
    header: dict[str, Any] | None = None
    error: SecureMLError | None = None
    if my_rank == owner.rank:
        if value is None:
            raise ValueError(f"party {owner.name} owns {what} but passed None to share()")
        try:
            value = check_encodable(value, limit=limit, what=f"{what} of {owner.name}")
            header = {"shape": tuple(value.shape), "error": None}
        except SecureMLError as e:
            error = e
            header = {"shape": None, "error": f"{type(e).__name__}: {e}"}
    header = communicator.broadcast_obj(header, owner.rank)
    if header["error"] is not None:
        if error is not None:
            raise error
        abort = ProtocolAbort(f"party {owner.name} could not share {what}: {header['error']}")
        abort.echo = True  # the cause is at the owner; the launcher reports that one
        raise abort
    if my_rank != owner.rank:
        value = torch.empty(header["shape"])
    return crypten.cryptensor(value, src=owner.rank)
