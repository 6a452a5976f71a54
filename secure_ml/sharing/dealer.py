"""The dealer: CrypTen's trusted third party, served from its own process.

CrypTen's ``TTPServer`` swallows any ``RuntimeError`` (a dead peer, a timeout)
and returns as if it had finished, so a failed run would look clean from the
dealer's side. We reuse its triple generators but run the request loop
ourselves, so that only an explicit "terminate" from party 0 ends it normally.

What the dealer learns: the shapes and kinds of the correlated randomness each
request asks for, never a share of any party's data. What it sends: party 0's
corrected share of each triple (the other parties derive theirs from seeds the
dealer shared with them at start-up). A ``bulk`` message (see
``secure_ml.sharing.precompute``) carries many requests; they are answered in
order, and all corrections go back to party 0 as one tensor.

What it serves: CrypTen's ``TTPServer`` calls whatever method name party 0
sends, with whatever arguments. Here every request is checked first
(``check_request``, ``check_bulk``): only the five tuple kinds CrypTen's
``TTPClient`` asks for, only the products a Beaver triple exists for, sizes
within ``MAX_REQUEST_ELEMENTS`` per tensor and bulks within the bounds of
``secure_ml.sharing.precompute``. Anything else raises ``ProtocolAbort`` and
the dealer exits, which ends the run (party 0 sees the link close).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort
from secure_ml.sharing import truncation
from secure_ml.sharing.csprng import setup_dealer_streams
from secure_ml.sharing.precompute import (
    BULK,
    MAX_BULK_ELEMENTS,
    MAX_BULK_REQUESTS,
    MAX_REQUEST_ELEMENTS,
    _answer_shape,
    _key,
    answer_bulk,
)

log = logging.getLogger(__name__)
TERMINATE = "terminate"

#: TTPServer methods that CrypTen's TTPClient (and exact truncation) calls, and how many arguments
#: each takes (sizes first; ``additive`` also names the product, ``trunc`` the divisor)
SERVED = {"additive": 3, "square": 1, "binary": 2, "wraps": 1, "B2A": 1, truncation.REQUEST: 2}
#: the products a Beaver triple is made for (crypten.mpc.primitives.beaver)
TRIPLE_OPS = ("mul", "matmul", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
CONV_KWARGS = ("stride", "padding", "dilation", "groups", "output_padding")
MAX_DIMS = 8
#: convolution arguments (strides, paddings, groups) above this are refused
MAX_CONV_ARGUMENT = 1 << 16
#: distinct requests whose check is remembered (a step's requests repeat)
MAX_KNOWN = 1 << 14


@dataclass(frozen=True)
class Request:
    """One checked dealer request: a served method, sizes as ``torch.Size``."""

    function: str
    args: tuple
    kwargs: dict
    elements: int  # of the answer


def serve() -> int:
    """Answer triple requests from party 0 until told to stop; return the count."""
    crypten = load_crypten()
    comm = crypten.communicator.get()
    server_cls = crypten.mpc.provider.ttp_provider.TTPServer
    server = server_cls.__new__(server_cls)  # skip __init__: it runs its own loop
    server.ttp_group = comm.ttp_group
    server.comm_group = comm.ttp_comm_group
    server.device = "cpu"
    setup_dealer_streams(server)  # a 256-bit ChaCha20 key per party
    dealer_rank = comm.get_ttp_rank()
    served = 0
    known: dict[Any, Request] = {}
    while True:
        message = comm.recv_obj(0, server.ttp_group)
        if message == TERMINATE:
            log.info("dealer: party 0 ended the session after %d requests", served)
            return served
        if isinstance(message, dict) and message.get("function") == BULK:
            requests = check_bulk(message, known)
            comm.broadcast(answer_bulk(server, requests), dealer_rank, server.comm_group)
            served += len(requests)
            continue
        request = _check_once(message, known, in_bulk=False)
        result = getattr(server, request.function)(*request.args, **request.kwargs)
        comm.send_obj(result.size(), 0, server.ttp_group)
        comm.broadcast(result, dealer_rank, server.comm_group)
        served += 1


def refuse(why: str) -> ProtocolAbort:
    return ProtocolAbort(
        f"the dealer refuses a request from party 0: {why}; the dealer serves only CrypTen's "
        f"tuple requests ({', '.join(SERVED)}) and bulks of them, within size bounds"
    )


def check_request(message: Any, *, in_bulk: bool = False) -> Request:
    """The checked form of one request; raise ``ProtocolAbort`` for anything not served."""
    keys = {"function", "args", "kwargs"} | (set() if in_bulk else {"device"})
    if not isinstance(message, dict) or set(message) != keys:
        shown = sorted(message) if isinstance(message, dict) else type(message).__name__
        raise refuse(f"a request must have the fields {sorted(keys)}, got {shown}")
    function, args, kwargs = message["function"], message["args"], message["kwargs"]
    if not isinstance(function, str) or function not in SERVED:
        raise refuse(f"function {str(function)[:60]!r} is not served")
    if not in_bulk and message["device"] not in (None, "cpu"):
        raise refuse(f"device {str(message['device'])[:20]!r}: the dealer runs on the CPU")
    if not isinstance(args, (list, tuple)) or len(args) != SERVED[function]:
        raise refuse(f"{function} takes {SERVED[function]} arguments")
    if not isinstance(kwargs, dict):
        raise refuse(f"{function}: keyword arguments must be a dict")
    if function == "additive":
        sizes = (_size(args[0]), _size(args[1]))
        op = args[2]
        if op not in TRIPLE_OPS:
            known = ", ".join(TRIPLE_OPS)
            raise refuse(f"additive triples exist for {known}, not {str(op)[:40]!r}")
        checked = (*sizes, op)
        kwargs = _conv_kwargs(op, kwargs)
    elif function == truncation.REQUEST:  # secure_ml's exact truncation: (size, divisor)
        checked = (_size(args[0]), _divisor(args[1]))
        if kwargs:
            raise refuse(f"{function} takes no keyword arguments")
    else:
        checked = tuple(_size(a) for a in args)
        if kwargs:
            raise refuse(f"{function} takes no keyword arguments")
    try:
        answer = _answer_shape(function, checked, kwargs)
    except Exception as e:  # torch's shape checks raise many kinds (even ZeroDivisionError)
        sizes = [list(size) for size in checked[:2]]
        raise refuse(f"{function} of sizes {sizes}: the shapes do not fit ({e})") from None
    elements = _bounded(answer, "the answer")
    return Request(function, checked, kwargs, elements)


def check_bulk(message: dict[str, Any], known: dict[Any, Request] | None = None) -> list[Request]:
    """The checked requests of a bulk message, in the order to answer them.

    A bulk lists its distinct ``requests`` once and their ``order`` as indices
    (see ``secure_ml.sharing.precompute``). ``known``: requests checked
    before, kept across calls.
    """
    fields = ["elements", "function", "order", "requests"]
    if sorted(message) != fields:
        raise refuse(f"a bulk must have the fields {fields}")
    distinct, order = message["requests"], message["order"]
    if not isinstance(distinct, list) or not 0 < len(distinct) <= MAX_BULK_REQUESTS:
        raise refuse(f"a bulk holds 1 to {MAX_BULK_REQUESTS} distinct requests")
    if not isinstance(order, list) or not 0 < len(order) <= MAX_BULK_REQUESTS:
        raise refuse(f"a bulk holds 1 to {MAX_BULK_REQUESTS} requests")
    known = {} if known is None else known
    checked = [_check_once(r, known) for r in distinct]
    if not all(type(i) is int and 0 <= i < len(checked) for i in order):
        raise refuse(f"a bulk's order must index its {len(checked)} distinct requests")
    requests = [checked[i] for i in order]
    elements = sum(r.elements for r in requests)
    if elements > MAX_BULK_ELEMENTS:
        raise refuse(f"a bulk's answers hold {elements} elements (limit {MAX_BULK_ELEMENTS})")
    if message["elements"] != elements:
        raise refuse(
            f"the bulk declares {str(message['elements'])[:20]} elements, its requests make "
            f"{elements}; party 0 and the dealer disagree on tuple shapes"
        )
    return requests


def _check_once(message: Any, known: dict[Any, Request], *, in_bulk: bool = True) -> Request:
    """``check_request``, once per distinct request (steps repeat the same requests)."""
    if len(known) > MAX_KNOWN:
        known.clear()
    try:
        key = (
            tuple(sorted(message)),
            _key(message["function"], message["args"], message["kwargs"]),
        )
        if key in known:  # the checked Request is served, not the message: equal is enough
            return known[key]
    except (TypeError, KeyError, AttributeError):  # not hashable or not a request: check it
        return check_request(message, in_bulk=in_bulk)
    known[key] = check_request(message, in_bulk=in_bulk)
    return known[key]


def _size(value: Any) -> torch.Size:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_DIMS:
        raise refuse(f"a size must be a list of at most {MAX_DIMS} dimensions")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise refuse("a size's dimensions must be non-negative integers")
    _bounded(value, "a size")
    return torch.Size(value)


def _divisor(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= truncation.LIMIT:
        raise refuse(f"a truncation divisor must be an integer in 2..2^62, got {str(value)[:20]}")
    return value


def _bounded(shape: Any, what: str) -> int:
    elements = math.prod(shape)
    if elements > MAX_REQUEST_ELEMENTS:
        raise refuse(f"{what} of {elements} elements exceeds {MAX_REQUEST_ELEMENTS} per tensor")
    return elements


def _conv_kwargs(op: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not op.startswith("conv") and kwargs:
        raise refuse(f"a {op} triple takes no keyword arguments")
    unknown = sorted(set(kwargs) - set(CONV_KWARGS))
    if unknown:
        raise refuse(f"{op}: unknown keyword arguments {unknown[:5]}")
    for name, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if len(values) > MAX_DIMS or not all(_small_int(v) for v in values):
            raise refuse(f"{op}: {name} must be integers in [0, {MAX_CONV_ARGUMENT}]")
    return kwargs


def _small_int(value: Any) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and 0 <= value <= MAX_CONV_ARGUMENT
