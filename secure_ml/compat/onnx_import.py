"""Make ``import crypten`` work on torch 2.x.

``crypten/nn/onnx_converter.py`` tries ``torch.onnx.symbolic_registry`` (torch
1.x) and falls back to ``torch.onnx._internal.registration`` (torch 1.13-2.x);
newer torch has neither, so the import of crypten fails. Neither name is used on
the fallback path: crypten registers its custom symbolics through the public
``torch.onnx.register_custom_op_symbolic``. We therefore provide a placeholder
module for the duration of the import only, and remove it afterwards so that
torch's namespace is left as we found it.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

_REGISTRATION = "torch.onnx._internal.registration"


def _registration_missing() -> bool:
    try:
        importlib.import_module(_REGISTRATION)
    except ImportError:
        return True
    return False


@contextlib.contextmanager
def registration_bridge() -> Iterator[None]:
    """While crypten is imported: a placeholder for the removed registry module."""
    if not _registration_missing():
        yield
        return
    placeholder = ModuleType(_REGISTRATION)
    placeholder.registry = None  # crypten imports the name but never uses it
    sys.modules[_REGISTRATION] = placeholder
    try:
        yield
    finally:
        sys.modules.pop(_REGISTRATION, None)


def import_crypten() -> ModuleType:
    """Import crypten, bridging the removed torch.onnx registry module."""
    if "crypten" in sys.modules:
        return sys.modules["crypten"]
    with registration_bridge():
        return importlib.import_module("crypten")
