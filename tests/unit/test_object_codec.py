"""The object-message codec: what travels between parties, and nothing that runs."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch

from secure_ml.errors import ProtocolAbort
from secure_ml.transport.objects import MAGIC, MAX_DEPTH, MalformedObject, decode, encode

# what really travels: dealer requests and answers, CrypTen's sizes, share()'s
# announcements, publish()'s values, the spec hash, a model's ONNX graph
TRAVELLING = [
    None,
    "terminate",
    torch.Size([64, 30]),
    {"value": (64, 30), "error": None},
    {"value": None, "error": "FixedPointRangeError"},
    {"value": b"\x08\x07onnx-graph\x00\xff" * 100, "error": None},
    {
        "function": "additive",
        "device": "cpu",
        "args": (torch.Size([1, 3, 8, 8]), torch.Size([4, 3, 3, 3]), "conv2d"),
        "kwargs": {"stride": (1, 1), "padding": [1, 1], "groups": 1},
    },
    {
        "function": "bulk",
        "requests": [{"function": "square", "args": (torch.Size([7]),), "kwargs": {}}] * 3,
        "elements": 21,
    },
    ("binary", 2),
    tuple(f"id-{i}" for i in range(50)),
    [1, -2, 2**70, 0.5, -1e-300, True, False, "ünïcode", [], {}, ()],
    {"nested": [{"a": (1, [2, (3,)])}]},
    b"",
    torch.Size([]),
]


@pytest.mark.parametrize("obj", TRAVELLING, ids=range(len(TRAVELLING)))
def test_every_type_that_travels_comes_back_equal_and_of_the_same_type(obj):
    back = decode(encode(obj))
    assert back == obj
    assert type(back) is type(obj)
    if isinstance(obj, dict):
        assert [type(v) for v in back.values()] == [type(v) for v in obj.values()]


@pytest.mark.parametrize(
    "tensor",
    [
        torch.arange(12, dtype=torch.long).reshape(3, 4) - 5,
        torch.zeros(2, 0, 3),
        torch.tensor([0.5, -1.25], dtype=torch.float64),
        torch.tensor([True, False]),
        torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),  # not contiguous
        torch.tensor(3.5),
    ],
)
def test_tensors_keep_dtype_shape_and_values(tensor):
    back = decode(encode({"t": tensor}))["t"]
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert torch.equal(back, tensor)


class Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        (Exploit(), "Exploit"),
        (torch.nn.Linear(2, 2), "Linear"),
        ({1: "a"}, "key 1"),
        ({"$tuple": [1]}, "'\\$tuple'"),
        (float("nan"), "float nan"),
        ([float("-inf")], "float -inf"),
        ({1, 2}, "set"),
        (torch.zeros(2, dtype=torch.complex64), "complex64"),
        (torch.zeros(2, requires_grad=True), "requires_grad=True"),
        (object(), "object"),
    ],
)
def test_anything_else_refuses_to_be_sent(obj, named):
    with pytest.raises(ProtocolAbort, match=named):
        encode(obj)


def test_deep_nesting_refuses_to_be_sent():
    deep: list = []
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ProtocolAbort, match="nested deeper"):
        encode(deep)


def message(document: bytes, *blobs: bytes, lengths: list[int] | None = None) -> bytes:
    lengths = [len(b) for b in blobs] if lengths is None else lengths
    table = b"".join(struct.pack(">Q", n) for n in lengths)
    return (
        struct.pack(">4sII", MAGIC, len(document), len(lengths))
        + table
        + document
        + b"".join(blobs)
    )


MALFORMED = {
    "a pickle": (pickle.dumps({"function": "square"}), "Python pickle"),
    "a pickle that would run code": (pickle.dumps(Exploit()), "Python pickle"),
    "empty": (b"", "too short"),
    "truncated JSON": (message(b"[1, 2, 3]")[:-3], "declares"),
    "absurd blob count": (struct.pack(">4sII", MAGIC, 2, 1 << 31) + b"[]", "declares"),
    "bad JSON": (message(b"[1, 2}"), "does not parse"),
    "not UTF-8": (message(b'"\xff"'), "does not parse"),
    "NaN": (message(b"NaN"), "does not parse"),
    "overflowing float": (message(b"[1e999]"), "does not parse"),
    "huge int literal": (message(b"9" * 5000), "does not parse"),
    "deep JSON": (message(b"[" * 100_000 + b"]" * 100_000), "does not parse"),
    "unknown tag": (message(b'{"$class": "os.system"}'), "unknown tag"),
    "tag with extra key": (message(b'{"$size": [1], "x": 1}'), "unknown tag"),
    "nested unknown tag": (message(b'[{"a": {"$reduce": 1}}]'), "unknown tag"),
    "negative dimension": (message(b'{"$size": [-1]}'), "dimension"),
    "bool dimension": (message(b'{"$size": [true]}'), "dimension"),
    "huge dimension": (message(b'{"$size": [' + str(2**64).encode() + b"]}"), "dimension"),
    "missing blob": (message(b'{"$bytes": 1}', b"ab"), "blob 1 of 1"),
    "blob lengths off": (message(b'{"$bytes": 0}', b"ab", lengths=[3]), "add up"),
    "trailing bytes": (message(b"null") + b"x", "add up"),
    "tensor dtype": (message(b'{"$tensor": ["object", [1], 0]}', b"x" * 8), "listed dtype"),
    "tensor size": (message(b'{"$tensor": ["int64", [2], 0]}', b"x" * 8), "has 8 bytes"),
    "tuple body": (message(b'{"$tuple": 3}'), "not a list"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_raise_a_clear_error(name):
    data, reason = MALFORMED[name]
    with pytest.raises(MalformedObject, match=reason):
        decode(data)


def test_the_wire_format_is_json_and_raw_bytes():
    data = encode({"graph": b"\x00\x01", "shape": (2, 3)})
    magic, length, count = struct.unpack_from(">4sII", data)
    assert (magic, count) == (MAGIC, 1)
    assert struct.unpack_from(">Q", data, 12) == (2,)
    document = json.loads(data[20 : 20 + length])
    assert document == {"graph": {"$bytes": 0}, "shape": {"$tuple": [2, 3]}}
    assert data[20 + length :] == b"\x00\x01"


def test_repeated_containers_are_encoded_once_and_decoded_equal():
    request = {"function": "square", "args": (torch.Size([7]),), "kwargs": {}}
    bulk = {"requests": [request] * 1000}
    assert decode(encode(bulk)) == bulk
    circular: list = []
    circular.append(circular)
    with pytest.raises(ProtocolAbort, match="nested deeper"):
        encode(circular)


def tiny_onnx(external: bool = False) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((2, 2), dtype=np.float32), "w")
    if external:  # what a hostile owner would send to make the receiver read a file
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value="../../etc/passwd")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_received_model_graph_is_checked_by_onnx():
    from secure_ml.sharing.model import check_architecture

    graph = tiny_onnx()
    assert check_architecture(decode(encode({"g": graph}))["g"], sender="owner") == graph
    for bad, reason in [
        (b"\x80\x04not onnx at all", "onnx rejects"),
        (graph[: len(graph) // 2], "onnx rejects"),
        ("a string", "a str as the model graph"),
        (tiny_onnx(external=True), "external files|onnx rejects"),
    ]:
        with pytest.raises(ProtocolAbort, match=f"party owner sent .*({reason})"):
            check_architecture(bad, sender="owner")
