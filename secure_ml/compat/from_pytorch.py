"""``crypten.nn.from_pytorch`` on torch 2.x.

Two breakages: ``torch.onnx.export`` defaults to the dynamo exporter since
torch 2.9, whose graphs crypten's converter cannot read, so we export with the
TorchScript exporter (``dynamo=False``); and exported graphs contain ONNX
``Identity`` nodes (torchvision's ResNet-18 has 72), which crypten has no module
for, so we register one.
"""

from __future__ import annotations

import inspect
import warnings
from types import ModuleType


def _identity_module(crypten: ModuleType) -> type:
    base = crypten.nn.module.Module

    class Identity(base):
        """ONNX ``Identity``: returns its input unchanged."""

        def forward(self, x):
            return x

        @staticmethod
        def from_onnx(attributes=None):
            return Identity()

    return Identity


def apply(crypten: ModuleType) -> None:
    """Patch the ONNX export and register the Identity op."""
    converter = crypten.nn.onnx_converter
    if getattr(converter._export_pytorch_model, "_secure_ml_patched", False):
        return
    supports_dynamo = "dynamo" in inspect.signature(converter.torch.onnx.export).parameters

    def export_pytorch_model(f, pytorch_model, dummy_input):
        kwargs = {
            "do_constant_folding": False,
            "export_params": True,
            "input_names": ["input"],
            "operator_export_type": converter.OperatorExportTypes.ONNX,
            "output_names": ["output"],
            "opset_version": converter._OPSET_VERSION,
        }
        if supports_dynamo:
            kwargs["dynamo"] = False
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated but is the one crypten reads
            warnings.simplefilter("ignore", DeprecationWarning)
            converter.torch.onnx.export(pytorch_model, dummy_input, f, **kwargs)
        return f

    export_pytorch_model._secure_ml_patched = True
    converter._export_pytorch_model = export_pytorch_model
    converter.ONNX_TO_CRYPTEN.setdefault("Identity", _identity_module(crypten))
