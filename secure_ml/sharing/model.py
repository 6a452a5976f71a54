"""Models on shares: convert PyTorch models for CrypTen, and move their weights.

- ``check_supported``: every ONNX op of a model must have a CrypTen module; the
  error lists all unsupported ops at once, before any party computes.
- ``export``/``blank``/``from_architecture``: the model owner sends the
  layer graph (its ONNX export with every weight set to zero), never its
  weights; everyone, the owner included, builds the CrypTen graph from ONNX,
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
    """The model (with its weights) as ONNX bytes, for ``from_architecture``."""
    return _onnx_bytes(model, sample_shape)


def blank(onnx_bytes: bytes) -> bytes:
    """The same ONNX graph with every weight replaced by zeros.

    Zeroing the exported graph, rather than exporting a zeroed model, keeps the
    structure identical: the exporter merges initializers with equal values, so
    a zeroed model would export a different graph. What the blank graph tells
    the receiver: the layers, their shapes, and which weight tensors of the
    real model were exactly equal (e.g. untrained BatchNorm statistics).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(onnx_bytes)
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
