"""The dealer's randomness, fetched in bulk ahead of the steps that use it.

With CrypTen's TTP every Beaver triple (and every other correlated random
tuple: squares, binary triples, wrap counts for truncation, random bits) costs
party 0 a round trip to the dealer: send the request, receive the size,
receive the correction. A logistic-regression step makes ~26 of them.

MPC is data-oblivious: a step of a given shape asks for the same tuples, in
the same order, whatever the data. So the first step of each shape is traced
(its requests recorded while served live), and before later steps of that
shape the tuples for many of them are produced in one go:

1. every party runs CrypTen's own tuple generators for the recorded requests,
   ``times`` times over, in order: each draws its shares of ``a``, ``b``, ...
   from the key stream it shares with the dealer, exactly as a live request would;
2. party 0, instead of asking for each correction, collects the requests and
   sends them to the dealer in one message, each distinct request once with
   the order of all (more messages only if a fill exceeds the bounds below);
   the dealer learns what it always learns: kinds and shapes of tuples,
   never data;
3. the dealer answers every request in the same order (so every generator
   stays in step) and sends party 0 all corrections in one tensor.

The tuples wait in a pool keyed by request; CrypTen's operations take them
from there. A request that finds the pool empty is served live, so a step that
differs from its trace is slower, never wrong. Every party fills and drains
the pool at the same points of the same program, so all parties always take
the same tuple for the same operation.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.sharing import truncation

log = logging.getLogger(__name__)

#: the dealer message that carries many requests
BULK = "bulk"
#: bounds the dealer enforces (secure_ml.sharing.dealer) and party 0 keeps: a
#: tensor of one request (operand or answer; 1 GiB of int64), and one bulk's
#: requests and answer elements. Party 0 splits a fill into as many bulks as
#: these need.
MAX_REQUEST_ELEMENTS = 1 << 27
MAX_BULK_REQUESTS = 1 << 16
MAX_BULK_ELEMENTS = 1 << 27
_TUPLE_KINDS = (
    "generate_additive_triple",
    "square",
    "generate_binary_triple",
    "wrap_rng",
    "B2A_rng",
    "trunc_rng",  # secure_ml.sharing.truncation
)
#: int64 tensors per tuple (for the memory cap): a, b, c or r, r2 / r, theta / rA, rB
_TENSORS_PER_TUPLE = {"generate_additive_triple": 3, "generate_binary_triple": 3, "trunc_rng": 3}


def _pooled_provider_class() -> type:
    crypten = load_crypten()
    base = crypten.mpc.provider.TrustedThirdParty

    class PooledTTP(base):
        """CrypTen's TTP provider, served from a pool filled in bulk."""

        def __init__(self) -> None:
            super().__init__()
            self.pool: dict[Hashable, deque] = {}
            self.recording: list[tuple[str, tuple, dict]] | None = None
            self.live_requests = 0

        def __getattribute__(self, name: str) -> Any:
            if name not in _TUPLE_KINDS:
                return object.__getattribute__(self, name)
            generate = object.__getattribute__(self, name)

            def serve(*args: Any, **kwargs: Any) -> Any:
                if self.recording is not None:
                    self.recording.append((name, args, kwargs))
                stock = self.pool.get(_key(name, args, kwargs))
                if stock:
                    return stock.popleft()
                self.live_requests += 1
                return generate(*args, **kwargs)

            return serve

        def fill(self, requests: list[tuple[str, tuple, dict]], times: int) -> None:
            """Produce ``times`` rounds of ``requests`` with one dealer exchange."""
            is_party0 = crypten.communicator.get().get_rank() == 0
            with _bulk_dealer_requests() if is_party0 else nullcontext():
                for _ in range(times):
                    for name, args, kwargs in requests:
                        made = object.__getattribute__(self, name)(*args, **kwargs)
                        self.pool.setdefault(_key(name, args, kwargs), deque()).append(made)

    return PooledTTP


def _key(name: str, args: tuple, kwargs: dict) -> Hashable:
    # convolution arguments arrive as lists from ONNX (padding=[1, 1], ...)
    return (name, _hashable(args), _hashable(sorted(kwargs.items())))


def _hashable(value: Any) -> Hashable:
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        return tuple(_hashable(v) for v in value)
    return value


@contextmanager
def _bulk_dealer_requests() -> Iterator[None]:
    """Party 0: defer each dealer request, then send them in as few bulks as the bounds allow."""
    crypten = load_crypten()
    client = crypten.mpc.provider.ttp_provider.TTPClient.get()
    messages: list[dict[str, Any]] = []
    answers: list[torch.Tensor] = []

    def deferred(function: str, device: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        answer = torch.empty(_answer_shape(function, args, kwargs), dtype=torch.long)
        held = sum(a.nelement() for a in answers)
        if len(messages) >= MAX_BULK_REQUESTS or held + answer.nelement() > MAX_BULK_ELEMENTS:
            _send_bulk(client, messages, answers)
        messages.append({"function": function, "args": args, "kwargs": kwargs})
        # CrypTen wraps this tensor as party 0's share; it is filled by _send_bulk
        answers.append(answer)
        return answer

    client.ttp_request = deferred  # an instance attribute shadows the method
    try:
        yield
    finally:
        del client.ttp_request
    _send_bulk(client, messages, answers)


def _send_bulk(client: Any, messages: list[dict[str, Any]], answers: list[torch.Tensor]) -> None:
    """Send the deferred requests as one bulk, fill their answers, and forget them."""
    if not messages:
        return
    comm = load_crypten().communicator.get()
    total = sum(a.nelement() for a in answers)
    # a fill repeats one step's requests: each distinct request travels once
    index: dict[Hashable, int] = {}
    distinct: list[dict[str, Any]] = []
    order: list[int] = []
    for m in messages:
        key = _key(m["function"], m["args"], m["kwargs"])
        if key not in index:
            index[key] = len(distinct)
            distinct.append(m)
        order.append(index[key])
    bulk = {"function": BULK, "requests": distinct, "order": order, "elements": total}
    comm.send_obj(bulk, comm.get_ttp_rank(), client.ttp_group)
    flat = torch.empty(total, dtype=torch.long)
    comm.broadcast(flat, comm.get_ttp_rank(), client.comm_group)
    for answer, part in zip(answers, flat.split([a.nelement() for a in answers]), strict=True):
        answer.copy_(part.view_as(answer))
    messages.clear()
    answers.clear()


def _answer_shape(function: str, args: tuple, kwargs: dict) -> torch.Size:
    """The shape of the dealer's answer, computed without data (meta tensors)."""
    if function == "additive":
        size0, size1, op, *rest = args
        a, b = torch.empty(size0, device="meta"), torch.empty(size1, device="meta")
        return getattr(torch, op)(a, b, *rest, **kwargs).shape
    if function == "binary":
        return torch.broadcast_shapes(args[0], args[1])
    if function == truncation.REQUEST:
        return truncation.answer_shape(args[0])
    return torch.Size(args[0])  # square, wraps, B2A: one tensor of the requested size


def answer_bulk(server: Any, requests: list[Any]) -> torch.Tensor:
    """Dealer side: answer checked requests of a bulk, in order, as one tensor.

    ``requests``: ``secure_ml.sharing.dealer.Request`` objects, already checked
    against the served kinds and the bounds.
    """
    server.device = "cpu"
    answers = [getattr(server, r.function)(*r.args, **r.kwargs).reshape(-1) for r in requests]
    flat = torch.cat(answers)
    expected = sum(r.elements for r in requests)
    if flat.nelement() != expected:
        raise RuntimeError(
            f"bulk request: the dealer expected {expected} elements and made "
            f"{flat.nelement()}; its shape check and CrypTen's generators disagree"
        )
    return flat


def tuple_bytes(requests: list[tuple[str, tuple, dict]]) -> int:
    """Memory one round of ``requests`` takes in the pool (int64 tensors).

    An estimate: every tensor of a tuple is counted at its first operand's
    size (exact for elementwise tuples; for a matmul triple usually more).
    """
    total = 0
    for name, args, _ in requests:
        size = args[0]
        numel = torch.Size(size).numel()
        total += 8 * numel * _TENSORS_PER_TUPLE.get(name, 2)
    return total


class Precompute:
    """Fetch the dealer's tuples for whole runs of same-shaped steps.

    Use ``with precompute.step(key, remaining):`` around each step, where
    ``key`` names the step's shape (e.g. its batch size) and ``remaining``
    counts the steps of that shape still to run, this one included. All
    parties must make the same calls in the same order; steps do not nest.
    Tuples for at most ``budget_mb`` are held ahead; a step that alone needs
    more is served live.
    """

    def __init__(self, provider: Any, *, budget_mb: int) -> None:
        self.provider = provider
        self.budget = budget_mb * 1024 * 1024
        self.plans: dict[Hashable, list[tuple[str, tuple, dict]]] = {}
        self.step_bytes: dict[Hashable, int] = {}
        self.ahead: dict[Hashable, int] = {}

    @contextmanager
    def step(self, key: Hashable, remaining: int) -> Iterator[None]:
        plan = self.plans.get(key)
        if plan is None:
            self.provider.recording = []
            try:
                yield
            finally:
                self.plans[key], self.provider.recording = self.provider.recording, None
                self.step_bytes[key] = max(1, tuple_bytes(self.plans[key]))
                self.ahead[key] = 0
            return
        per_step = self.step_bytes[key]
        # a step whose tuples alone exceed the cap is served live, as before
        if self.ahead[key] == 0 and plan and per_step <= self.budget:
            times = min(remaining, self.budget // per_step)
            self.provider.fill(plan, times)
            self.ahead[key] = times
            log.debug("precomputed %d steps of %r (%d requests each)", times, key, len(plan))
        self.ahead[key] = max(0, self.ahead[key] - 1)
        yield


@contextmanager
def pooled_dealer(enabled: bool, *, budget_mb: int) -> Iterator[Precompute | None]:
    """Install the pooled TTP provider for a session (None when not used)."""
    if not enabled:
        yield None
        return
    crypten = load_crypten()
    providers = vars(crypten.mpc)["__SUPPORTED_PROVIDERS"]
    original = providers["TTP"]
    provider = _pooled_provider_class()()
    providers["TTP"] = provider
    try:
        yield Precompute(provider, budget_mb=budget_mb)
    finally:
        providers["TTP"] = original
