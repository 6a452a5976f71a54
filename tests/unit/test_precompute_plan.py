"""Precompute's schedule: trace once per shape, fill ahead within the cap."""

from __future__ import annotations

import torch

from secure_ml.sharing.precompute import Precompute, _answer_shape, tuple_bytes


class RecordingProvider:
    """The two hooks Precompute drives: a request recorder and bulk fills.

    The real provider is exercised across processes in
    tests/multiparty/test_mpc_engine.py; here only the schedule is checked.
    """

    def __init__(self, requests):
        self.requests = requests
        self.recording = None
        self.fills = []

    def run_step(self):
        if self.recording is not None:
            self.recording.extend(self.requests)

    def fill(self, plan, times):
        self.fills.append((len(plan), times))


SQUARE = ("square", (torch.Size([1024]),), {})  # 2 x 1024 int64 = 16 KiB per step


def run(precompute, provider, key, steps):
    for done in range(steps):
        with precompute.step(key, steps - done):
            provider.run_step()


def test_first_step_is_traced_then_the_rest_fetched_in_one_fill():
    provider = RecordingProvider([SQUARE, SQUARE])
    run(Precompute(provider, budget_mb=1), provider, "batch64", steps=10)
    assert provider.fills == [(2, 9)]


def test_the_cap_splits_fills_and_an_oversized_step_stays_live():
    provider = RecordingProvider([SQUARE] * 16)  # 256 KiB per step: 4 steps fit in 1 MiB
    run(Precompute(provider, budget_mb=1), provider, "a", steps=10)
    assert provider.fills == [(16, 4), (16, 4), (16, 1)]
    huge = RecordingProvider([("square", (torch.Size([1 << 20]),), {})])  # 16 MiB a step
    run(Precompute(huge, budget_mb=1), huge, "b", steps=3)
    assert huge.fills == []


def test_each_shape_has_its_own_plan():
    provider = RecordingProvider([SQUARE])
    precompute = Precompute(provider, budget_mb=1)
    run(precompute, provider, "full", steps=3)
    run(precompute, provider, "last", steps=2)
    assert provider.fills == [(1, 2), (1, 1)]
    assert set(precompute.plans) == {"full", "last"}


def test_answer_shapes_match_the_dealers_operations():
    a, b = torch.Size([4, 3]), torch.Size([3, 2])
    assert _answer_shape("additive", (a, b, "matmul"), {}) == torch.Size([4, 2])
    image, kernel = torch.Size([1, 2, 5, 5]), torch.Size([3, 2, 3, 3])
    shape = _answer_shape("additive", (image, kernel, "conv2d"), {"padding": 1})
    assert shape == torch.Size([1, 3, 5, 5])
    assert _answer_shape("binary", (torch.Size([4, 1]), torch.Size([1, 3])), {}) == (4, 3)
    assert _answer_shape("wraps", (torch.Size([7]),), {}) == torch.Size([7])
    assert tuple_bytes([SQUARE]) == 2 * 8 * 1024


def test_pool_keys_accept_onnx_list_arguments():
    from secure_ml.sharing.precompute import _key

    size = torch.Size([1, 3, 8, 8])
    key = _key("generate_additive_triple", (size, size, "conv2d"), {"padding": [1, 1]})
    assert hash(key) == hash(
        _key("generate_additive_triple", (size, size, "conv2d"), {"padding": [1, 1]})
    )
