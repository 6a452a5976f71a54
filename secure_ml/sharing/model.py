"""Models on shares: convert PyTorch models for CrypTen, and move their weights.

- ``check_supported``: every ONNX op of a model must have a CrypTen module; the
  error lists all unsupported ops at once, before any party computes.
- ``architecture``/``from_architecture``: the model owner sends the layer
  graph (ONNX with every weight set to zero), never its weights; the other
  parties build the same CrypTen graph from it. The architecture is public.
- ``shared_parameters``: a CrypTen model's parameters under their PyTorch
  ``state_dict`` names, so a released model loads into the plaintext class.
- ``save_shares``/``load_shares``: each party keeps its own shares of a model
  (``keep_shared``); the files are useless alone.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import DataError, SpecError


def _onnx_bytes(model: torch.nn.Module, sample_shape: Sequence[int]) -> bytes:
    crypten = load_crypten()
    converter = crypten.nn.onnx_converter
    buffer = io.BytesIO()
    converter._export_pytorch_model(buffer, model.eval(), torch.zeros(1, *sample_shape))
    return buffer.getvalue()


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
            "replace those layers (e.g. MaxPool -> AvgPool, GELU -> ReLU) before a secure run"
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


def architecture(model: torch.nn.Module, sample_shape: Sequence[int]) -> bytes:
    """The model's layer graph as ONNX, with every parameter and buffer zeroed."""
    blank = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*blank.parameters(), *blank.buffers()]:
            if tensor.is_floating_point():
                tensor.zero_()
    return _onnx_bytes(blank, sample_shape)


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
