"""The format of object messages between parties: JSON and raw bytes, never pickle.

CrypTen's ``send_obj``/``broadcast_obj`` and torch's ``all_gather_object``
pickle what they send and unpickle what they receive, so a peer (or anyone on
the path between hosts) could run code in every other party. Here an object
message is data only:

    b"SMO1" | uint32 JSON length | uint32 blob count | uint64 per blob: length
            | JSON (UTF-8) | blobs                      (integers big-endian)

JSON carries ``None``, booleans, ints, finite floats, strings, lists and dicts
with string keys. The few other types that really travel are tagged by a
one-key object whose key starts with ``$``:

- ``{"$tuple": [...]}``: a tuple (shapes, id sets, ``(task, n_classes)``);
- ``{"$size": [...]}``: a ``torch.Size`` (CrypTen's sizes, dealer answers);
- ``{"$bytes": i}``: the ``i``-th blob (a model's ONNX graph);
- ``{"$tensor": [dtype, shape, i]}``: a CPU tensor of a listed dtype whose
  raw little-endian bytes are the ``i``-th blob.

Anything else refuses to be sent (``ProtocolAbort`` at the sender), and the
receiver only parses: a message that is not in this format, is truncated, or
nests too deep raises ``MalformedObject``, which the communicator turns into a
``ProtocolAbort`` naming the peer. Nothing received is ever called.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import torch

from secure_ml.errors import ProtocolAbort

MAGIC = b"SMO1"
_HEADER = struct.Struct(">4sII")
_BLOB_LENGTH = struct.Struct(">Q")
#: the largest object message either side accepts. The largest object that
#: travels is a model's blanked ONNX graph (ResNet-18: ~45 MB).
MAX_OBJECT_BYTES = 1 << 29
MAX_DEPTH = 32
TENSOR_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float64, torch.float32, torch.float16, torch.int64, torch.int32,
        torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}  # fmt: skip
_TAGS = ("$tuple", "$size", "$bytes", "$tensor")
ALLOWED = (
    "None, bool, int, finite float, str, list, tuple, dict with str keys, bytes, "
    f"torch.Size and CPU tensors of dtype {', '.join(TENSOR_DTYPES)}"
)


class MalformedObject(ValueError):
    """Bytes from a peer that are not an object message of this format."""


# ------------------------------------------------------------------ encode --


def encode(obj: Any) -> bytes:
    """The message for ``obj``; raise ``ProtocolAbort`` for a type that may not travel."""
    blobs: list[bytes] = []
    tree = _Encoder(blobs).to_json(obj, depth=0)
    document = json.dumps(tree, allow_nan=False, separators=(",", ":")).encode()
    table = b"".join(_BLOB_LENGTH.pack(len(b)) for b in blobs)
    header = _HEADER.pack(MAGIC, len(document), len(blobs))
    message = b"".join([header, table, document, *blobs])
    if len(message) > MAX_OBJECT_BYTES:
        raise ProtocolAbort(
            f"cannot send an object message of {len(message)} bytes (limit {MAX_OBJECT_BYTES}): "
            "share large tensors instead of sending them as objects"
        )
    return message


class _Encoder:
    """One message's encoding; a container met twice is converted once (bulks repeat)."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs
        self.done: dict[int, tuple[Any, Any]] = {}  # id -> (object, its JSON)

    def to_json(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, (list, tuple, dict)):
            seen = self.done.get(id(obj))
            if seen is not None and seen[0] is obj:
                return seen[1]
            converted = _to_json(obj, self, depth)
            self.done[id(obj)] = (obj, converted)  # keeps obj alive: ids stay unique
            return converted
        return _to_json(obj, self, depth)


def _to_json(obj: Any, encoder: _Encoder, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolAbort(f"cannot send an object nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ProtocolAbort(f"cannot send the float {obj} to another party: JSON has no {obj}")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Size):
        return {"$size": [int(d) for d in obj]}
    if isinstance(obj, (list, tuple)):
        items = [encoder.to_json(item, depth + 1) for item in obj]
        return items if isinstance(obj, list) else {"$tuple": items}
    if isinstance(obj, dict):
        return {_key(k): encoder.to_json(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (bytes, bytearray)):
        encoder.blobs.append(bytes(obj))
        return {"$bytes": len(encoder.blobs) - 1}
    if isinstance(obj, torch.Tensor):
        return _tensor_to_json(obj, encoder.blobs)
    raise ProtocolAbort(
        f"cannot send an object of type {type(obj).__module__}.{type(obj).__qualname__} to "
        f"another party: object messages carry only {ALLOWED} (nothing is pickled)"
    )


def _key(key: Any) -> str:
    if not isinstance(key, str) or key.startswith("$"):
        raise ProtocolAbort(
            f"cannot send a dict with key {key!r}: keys must be strings not starting with '$'"
        )
    return key


def _tensor_to_json(tensor: torch.Tensor, blobs: list[bytes]) -> dict[str, Any]:
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in TENSOR_DTYPES or tensor.device.type != "cpu" or tensor.requires_grad:
        raise ProtocolAbort(
            f"cannot send a {tensor.dtype} tensor on {tensor.device} (requires_grad="
            f"{tensor.requires_grad}) as an object: only CPU tensors without autograd of "
            f"dtype {', '.join(TENSOR_DTYPES)}"
        )
    blobs.append(tensor.contiguous().numpy().tobytes())
    return {"$tensor": [dtype, list(tensor.shape), len(blobs) - 1]}


# ------------------------------------------------------------------ decode --


def decode(data: bytes) -> Any:
    """The object in a message from a peer; raise ``MalformedObject`` if it is not one."""
    if len(data) < _HEADER.size:
        raise MalformedObject(f"{len(data)} bytes are too short for an object message")
    magic, length, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        hint = " (a Python pickle)" if data[:1] == b"\x80" else ""
        raise MalformedObject(f"it does not start with {MAGIC!r} but {data[:4]!r}{hint}")
    start = _HEADER.size + count * _BLOB_LENGTH.size
    end = start + length
    if end > len(data):
        raise MalformedObject(
            f"it declares {count} blobs and {length} bytes of JSON but has {len(data)} in all"
        )
    blobs = _split_blobs(data, count, end)
    try:
        text = data[start:end].decode()
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
            object_hook=lambda node: _untag(node, blobs),
        )
    except MalformedObject:
        raise
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise MalformedObject(f"its JSON does not parse ({type(e).__name__}: {e})") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number this format carries")


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf (1e999 parses as inf)
        raise ValueError(f"{text[:20]} is not a finite float")
    return value


def _split_blobs(data: bytes, count: int, start: int) -> list[bytes]:
    lengths = [_BLOB_LENGTH.unpack_from(data, _HEADER.size + 8 * i)[0] for i in range(count)]
    if start + sum(lengths) != len(data):
        raise MalformedObject(
            f"its blobs add up to {sum(lengths)} bytes, {len(data) - start} follow its JSON"
        )
    blobs = []
    for n in lengths:
        blobs.append(data[start : start + n])
        start += n
    return blobs


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _untag(node: dict[str, Any], blobs: list[bytes]) -> Any:
    """One parsed JSON object (its contents already parsed): a dict, or a tagged value."""
    tagged = [k for k in node if k.startswith("$")]
    if not tagged:
        return node
    if len(node) != 1 or tagged[0] not in _TAGS:
        raise MalformedObject(f"it has an unknown tag {sorted(node)[:3]}")
    tag, body = tagged[0], node[tagged[0]]
    if tag == "$tuple":
        if not isinstance(body, list):
            raise MalformedObject("a $tuple is not a list")
        return tuple(body)
    if tag == "$size":
        return torch.Size(_shape(body))
    if tag == "$bytes":
        return _blob(body, blobs)
    return _tensor_from_json(body, blobs)


def _shape(body: Any) -> list[int]:
    if not isinstance(body, list) or len(body) > MAX_DEPTH:
        raise MalformedObject(f"a size is not a list of at most {MAX_DEPTH} dimensions")
    if not all(_is_count(d) and d < 1 << 62 for d in body):
        raise MalformedObject("a size has a dimension that is not an integer in [0, 2^62)")
    return body


def _blob(index: Any, blobs: list[bytes]) -> bytes:
    if not _is_count(index) or index >= len(blobs):
        raise MalformedObject(f"it refers to blob {index!r} of {len(blobs)}")
    return blobs[index]


def _tensor_from_json(body: Any, blobs: list[bytes]) -> torch.Tensor:
    if not isinstance(body, list) or len(body) != 3 or body[0] not in TENSOR_DTYPES:
        raise MalformedObject("a $tensor is not [dtype, shape, blob] with a listed dtype")
    dtype, shape, raw = TENSOR_DTYPES[body[0]], _shape(body[1]), _blob(body[2], blobs)
    expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if len(raw) != expected:
        raise MalformedObject(f"a {body[0]} tensor of shape {shape} has {len(raw)} bytes")
    if not raw:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
