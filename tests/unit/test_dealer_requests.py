"""The dealer serves CrypTen's tuple requests within bounds, and refuses everything else."""

from __future__ import annotations

import pytest
import torch

from secure_ml.errors import ProtocolAbort
from secure_ml.sharing.dealer import check_bulk, check_request
from secure_ml.sharing.precompute import (
    BULK,
    MAX_BULK_ELEMENTS,
    MAX_BULK_REQUESTS,
    MAX_REQUEST_ELEMENTS,
)

S = torch.Size


def live(function, *args, device="cpu", **kwargs):
    return {"function": function, "device": device, "args": args, "kwargs": kwargs}


# what CrypTen's TrustedThirdParty asks for (ttp_provider.py), with answer sizes
SERVED = [
    (live("additive", S([64, 30]), S([30, 1]), "matmul"), 64),
    (live("additive", S([64, 1]), S([64, 1]), "mul"), 64),
    (
        live(
            "additive",
            S([2, 3, 8, 8]),
            S([4, 3, 3, 3]),
            "conv2d",
            stride=(1, 1),
            padding=[1, 1],
            dilation=1,
            groups=1,
        ),
        2 * 4 * 8 * 8,
    ),
    (live("additive", S([1, 2, 5]), S([2, 3, 2]), "conv_transpose1d", stride=2), 3 * 10),
    (live("square", S([7, 2])), 14),
    (live("binary", S([5, 1]), S([1, 4])), 20),
    (live("wraps", S([3])), 3),
    (live("B2A", [3, 2], device=None), 6),
    (live("trunc", S([4, 5]), 2**16), 2 * 20),  # secure_ml's exact truncation
]


@pytest.mark.parametrize(("message", "elements"), SERVED, ids=range(len(SERVED)))
def test_crypten_requests_are_served_with_their_answer_size(message, elements):
    request = check_request(message)
    assert request.function == message["function"]
    assert request.elements == elements
    assert all(isinstance(a, torch.Size) for a in request.args[:2] if isinstance(a, list | tuple))


REFUSED = {
    "a private method": (live("_setup_generators"), "'_setup_generators' is not served"),
    "a dunder": (live("__class__"), "'__class__' is not served"),
    "CrypTen's client name": (
        live("generate_additive_triple", S([1]), S([1]), "mul"),
        "not served",
    ),
    "bulk inside a live request": (live(BULK), "not served"),
    "not a dict": ("square", "fields"),
    "extra field": ({**live("square", S([1])), "then": "x"}, "fields"),
    "a torch function": (live("additive", S([2]), S([2]), "save"), "not 'save'"),
    "absurd size": (live("square", S([1 << 20, 1 << 20])), "exceeds"),
    "absurd answer": (live("additive", S([1 << 14, 1]), S([1, 1 << 14]), "matmul"), "exceeds"),
    "negative size": (live("wraps", [-1]), "non-negative"),
    "float size": (live("wraps", [2.5]), "non-negative"),
    "too many dimensions": (live("wraps", [1] * 9), "at most 8"),
    "shapes that do not fit": (live("additive", S([2, 3]), S([4, 5]), "matmul"), "do not fit"),
    "truncation by 1": (live("trunc", S([3]), 1), "divisor"),
    "truncation by a float": (live("trunc", S([3]), 65536.0), "divisor"),
    "wrong arity": (live("square", S([1]), S([1])), "takes 1 arguments"),
    "kwargs on square": (live("square", S([1]), generator=1), "no keyword"),
    "kwargs on mul": (live("additive", S([1]), S([1]), "mul", out=1), "no keyword"),
    "unknown conv kwarg": (
        live("additive", S([1, 1, 4]), S([1, 1, 2]), "conv1d", bias=1),
        "unknown keyword",
    ),
    "huge stride": (
        live("additive", S([1, 1, 4]), S([1, 1, 2]), "conv1d", stride=1 << 40),
        "integers in",
    ),
    "zero stride": (live("additive", S([1, 1, 4]), S([1, 1, 2]), "conv1d", stride=0), "do not fit"),
    "cuda": (live("square", S([1]), device="cuda"), "device"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_anything_else_is_refused_with_a_clear_error(name):
    message, reason = REFUSED[name]
    with pytest.raises(ProtocolAbort, match=f"dealer refuses a request from party 0: .*{reason}"):
        check_request(message)


def bulk(requests, elements, order=None):
    order = list(range(len(requests))) if order is None else order
    return {"function": BULK, "requests": requests, "order": order, "elements": elements}


def inner(function, *args, **kwargs):
    return {"function": function, "args": args, "kwargs": kwargs}


def test_a_bulk_is_checked_request_by_request_and_as_a_whole():
    requests = [inner("square", S([4])), inner("additive", S([2, 3]), S([3, 5]), "matmul")]
    checked = check_bulk(bulk(requests, 14))
    assert [r.elements for r in checked] == [4, 10]
    repeated = check_bulk(bulk(requests, 4 + 10 + 10 + 4, order=[0, 1, 1, 0]))
    assert [r.function for r in repeated] == ["square", "additive", "additive", "square"]
    with pytest.raises(ProtocolAbort, match="declares 15 elements"):
        check_bulk(bulk(requests, 15))
    with pytest.raises(ProtocolAbort, match="order must index its 2 distinct"):
        check_bulk(bulk(requests, 14, order=[0, 2]))
    with pytest.raises(ProtocolAbort, match="order must index"):
        check_bulk(bulk(requests, 14, order=[0, True]))
    with pytest.raises(ProtocolAbort, match="fields"):  # a live request's device field
        check_bulk(bulk([live("square", S([4]))], 4))
    with pytest.raises(ProtocolAbort, match="fields"):
        check_bulk({"function": BULK, "requests": requests, "elements": 14})
    with pytest.raises(ProtocolAbort, match="not served"):
        check_bulk(bulk([inner(BULK)], 0))
    with pytest.raises(ProtocolAbort, match=f"1 to {MAX_BULK_REQUESTS} requests"):
        check_bulk(bulk(requests[:1], 0, order=[0] * (MAX_BULK_REQUESTS + 1)))
    with pytest.raises(ProtocolAbort, match="1 to"):
        check_bulk(bulk([], 0))
    big = inner("square", S([MAX_REQUEST_ELEMENTS]))
    times = MAX_BULK_ELEMENTS // MAX_REQUEST_ELEMENTS + 1
    with pytest.raises(ProtocolAbort, match="answers hold"):
        check_bulk(bulk([big], times * MAX_REQUEST_ELEMENTS, order=[0] * times))


def test_a_remembered_check_serves_the_checked_request_not_the_new_message():
    known = {}
    first = check_bulk(bulk([inner("wraps", S([3]))], 3), known)[0]
    again = check_bulk(bulk([inner("wraps", [3])], 3), known)[0]
    assert again is first and isinstance(again.args[0], torch.Size)
    with pytest.raises(ProtocolAbort, match="fields"):  # an extra field is not a known request
        check_bulk(bulk([{**inner("wraps", S([3])), "x": 1}], 3), known)
