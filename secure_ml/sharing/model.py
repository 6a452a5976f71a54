"""Models on shares: convert PyTorch models for CrypTen, and move their weights.

- ``check_supported``: every ONNX op of a model must have a CrypTen module; the
  error lists all unsupported ops at once, before any party computes.
- ``export``/``blank``/``from_architecture``: the model owner sends the
  layer graph (its ONNX export with every weight and value constant set to
  zero), never its weights; everyone, the owner included, builds the CrypTen graph from ONNX,
  so all graphs match. The architecture is public.
- ``shared_parameters``: a CrypTen model's parameters under their PyTorch
  ``state_dict`` names, so a released model loads into the plaintext class.
- ``save_shares``/``load_shares``: each party keeps its own shares of a model
  (``keep_shared``); the files are useless alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import DataError, ProtocolAbort, SpecError


def _onnx_bytes(model: torch.nn.Module, sample_shape: Sequence[int]) -> bytes:
    """The ONNX graph exactly as ``crypten.nn.from_pytorch`` exports it.

    The same exporter path matters: a plain export fuses BatchNorm into the
    convolution before it, crypten's does not, and the model owner's graph and
    everyone else's must have the same parameters in the same order.
    """
    crypten = load_crypten()
    converter = crypten.nn.onnx_converter
    with converter._from_pytorch_to_bytes(model.eval(), torch.zeros(1, *sample_shape)) as f:
        return f.getvalue()


def check_supported(model: torch.nn.Module, sample_shape: Sequence[int]) -> None:
    """Raise SpecError listing every layer op CrypTen cannot run."""
    import onnx

    crypten = load_crypten()
    converter = crypten.nn.onnx_converter
    graph = onnx.load_model_from_string(_onnx_bytes(model, sample_shape)).graph
    missing = sorted({node.op_type for node in graph.node if _unsupported(converter, node.op_type)})
    if missing:
        raise SpecError(
            f"the model uses operations CrypTen cannot compute on shares: {', '.join(missing)}; "
            "replace them with supported layers (e.g. Tanh/ELU/LeakyReLU -> ReLU, "
            "LayerNorm -> BatchNorm) before a secure run"
        )


def _unsupported(converter: Any, op_type: str) -> bool:
    try:
        converter._get_operator_class(op_type, {})
    except ValueError:
        return True
    return False


def to_crypten(model: torch.nn.Module, sample_shape: Sequence[int]) -> Any:
    """An (unencrypted) CrypTen copy of ``model``."""
    crypten = load_crypten()
    return crypten.nn.from_pytorch(model.eval(), torch.zeros(1, *sample_shape))


def export(model: torch.nn.Module, sample_shape: Sequence[int]) -> bytes:
    """The model (with its weights) as ONNX bytes, for ``from_architecture``.

    Value constants become initializers (see ``blank``), so that they are
    secret-shared with the weights instead of travelling in the graph.
    """
    return _constants_as_weights(_onnx_bytes(model, sample_shape))


#: op inputs CrypTen needs in plaintext: op parameters, not model values
PUBLIC_INPUTS = {
    "Pow": {1}, "Clip": {1, 2}, "Pad": {1, 2}, "Dropout": {1, 2}, "Reshape": {1},
    "Expand": {1}, "Tile": {1}, "Gather": {1}, "Unsqueeze": {1}, "Squeeze": {1},
    "Slice": {1, 2, 3, 4}, "ReduceSum": {1}, "ReduceMean": {1}, "ConstantOfShape": {0},
    "Range": {0, 1, 2}, "Split": {1}, "Resize": {1, 2, 3}, "OneHot": {0, 1, 2},
}  # fmt: skip


def _constant_array(node: Any) -> Any:
    from onnx import helper, numpy_helper

    (attr,) = node.attribute
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_floats"):
        import numpy as np

        return np.asarray(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        import numpy as np

        return np.asarray(value, dtype=np.int64)
    raise SpecError(f"the model has a {attr.name} constant, which CrypTen cannot import")


def _is_value(array: Any, uses: list[tuple[str, int]]) -> bool:
    """A floating-point constant is a model value unless an op needs it in
    plaintext. Integer constants are structure (shapes, axes, indices: the
    exporter's shape arithmetic uses them with Mul, Concat, ...)."""
    import numpy as np

    if any(index in PUBLIC_INPUTS.get(op, ()) for op, index in uses):
        return False
    return bool(np.issubdtype(array.dtype, np.floating))


def _final_uses(graph: Any) -> dict[str, list[tuple[str, int]]]:
    """(op, input index) of every use of each value, looking through Cast/Identity."""
    direct: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            direct.setdefault(name, []).append((node, index))

    def final(name: str, depth: int = 0) -> list[tuple[str, int]]:
        found = []
        for node, index in direct.get(name, []):
            if node.op_type in ("Cast", "Identity") and depth < 8:
                found += final(node.output[0], depth + 1)
            else:
                found.append((node.op_type, index))
        return found

    return {name: final(name) for name in direct}


def _constants_as_weights(onnx_bytes: bytes) -> bytes:
    """Move every value constant of the graph into an initializer.

    CrypTen keeps ``Constant`` nodes in plaintext at every party; an
    initializer becomes a parameter, secret-shared by the model owner and
    zeroed by ``blank``. A divisor becomes a multiplier (x / c = x * (1/c)),
    so dividing by a shared value never needs a reciprocal on shares.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(onnx_bytes)
    graph = proto.graph
    uses = _final_uses(graph)
    for node in list(graph.node):
        if node.op_type != "Constant":
            continue
        array = _constant_array(node)
        name = node.output[0]
        if not _is_value(array, uses.get(name, [])):
            continue
        direct = [n for n in graph.node if name in n.input]
        divisor = all(n.op_type == "Div" and list(n.input)[1:] == [name] for n in direct)
        if divisor:
            array = (1.0 / array.astype(np.float64)).astype(np.float32)
            for consumer in direct:
                consumer.op_type = "Mul"
        graph.node.remove(node)
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
    return proto.SerializeToString()


def blank(onnx_bytes: bytes) -> bytes:
    """The same ONNX graph with every model value replaced by zeros.

    Model values are the initializers (weights, buffers) and every constant
    that carries a value (``_constants_as_weights``: a ``checkpoint:`` model's
    plain tensor attributes, Python numbers in ``forward``); ``export`` made
    them initializers already, so owner and receivers build the same graph.
    Zeroing the exported graph, rather than exporting a zeroed model, keeps the
    structure identical: the exporter merges initializers with equal values, so
    a zeroed model would export a different graph.

    What the blank graph tells the receiver: the layers and their shapes; which
    weight tensors of the real model were exactly equal (e.g. untrained
    BatchNorm statistics); and, in plaintext, what CrypTen must compute with
    in the clear: integer constants used as structure (shapes, axes, gather
    indices), op parameters (the exponent of ``Pow``, ``Clip`` bounds, ``Pad``
    values, ``Dropout`` ratios) and ``ConstantOfShape`` fill values. A model
    value used only in such a place (e.g. a buffer as a ``clamp`` bound) is
    therefore public.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(_constants_as_weights(onnx_bytes))
    for init in proto.graph.initializer:
        zeros = np.zeros_like(numpy_helper.to_array(init))
        init.CopyFrom(numpy_helper.from_array(zeros, init.name))
    return proto.SerializeToString()


def check_architecture(graph: Any, *, sender: str) -> bytes:
    """``graph`` as received from party ``sender``, once ``onnx`` accepts it.

    It must be bytes of an ONNX model that ``onnx`` parses and its checker
    accepts, with every tensor inside the bytes: a reference to external data
    would make ``crypten.nn.from_onnx`` read a file of the receiver's.
    """
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    if not isinstance(graph, bytes):
        raise ProtocolAbort(f"party {sender} sent a {type(graph).__name__} as the model graph")
    try:
        proto = onnx.load_model_from_string(graph)
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf's DecodeError, onnx's ValidationError, ...
        raise ProtocolAbort(
            f"party {sender} sent a model graph that onnx rejects ({type(e).__name__}: "
            f"{str(e)[:200]})"
        ) from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _get_all_tensors(proto)):
        raise ProtocolAbort(f"party {sender} sent a model graph that refers to external files")
    return graph


def from_architecture(onnx_bytes: bytes) -> Any:
    """The CrypTen model described by ``architecture`` bytes."""
    crypten = load_crypten()
    return crypten.nn.from_onnx(io.BytesIO(onnx_bytes))


def shared_parameters(crypten_model: Any) -> dict[str, Any]:
    """Parameters under their PyTorch ``state_dict`` names (CrypTen appends '.data')."""
    return {name.removesuffix(".data"): p for name, p in crypten_model.named_parameters()}


def save_shares(path: Path, crypten_model: Any, meta: dict[str, Any]) -> Path:
    """Save this party's shares of every parameter, with what is needed to reload them."""
    shares = {name: p.share.clone() for name, p in shared_parameters(crypten_model).items()}
    torch.save({"meta": meta, "shares": shares}, path)
    return path


def read_shares(path: Path) -> dict[str, Any]:
    """Read a file written by ``save_shares`` (tensors and plain data only)."""
    if not path.is_file():
        raise DataError(f"{path}: no model shares here; train with keep_shared = true first")
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:
        raise DataError(f"{path}: not a secure_ml model-shares file ({e})") from None


def load_shares(crypten_model: Any, shares: dict[str, torch.Tensor], path: Path) -> None:
    """Put saved shares into an encrypted CrypTen model of the same architecture."""
    params = shared_parameters(crypten_model)
    if set(params) != set(shares):
        raise DataError(f"{path}: the saved shares do not match the model's parameters")
    for name, param in params.items():
        if tuple(param.share.shape) != tuple(shares[name].shape):
            raise DataError(f"{path}: share {name} has shape {tuple(shares[name].shape)}")
        param.share = shares[name]
