"""CrypTen 0.4.1 on torch 2.x: the patches, applied once, before first use.

``load_crypten()`` is the only sanctioned way to obtain the ``crypten`` module
inside ``secure_ml``. It makes the import work on torch 2.x and then repairs
behaviour that is wrong or broken there (see each submodule's docstring):

- ``onnx_import``: crypten imports torch.onnx internals that no longer exist;
- ``decode``: ``FixedPointEncoder.decode`` is off by 1.0 for some negatives;
- ``serialization``: ``crypten.load`` under torch's ``weights_only=True``;
- ``from_pytorch``: ONNX export needs ``dynamo=False`` and an Identity op.

``import secure_ml`` installs ``install_import_hook()``: a finder on
``sys.meta_path`` that applies the same patches when crypten is first
imported, so a user's own ``import crypten`` works too. The hook imports
nothing until then: commands that never touch crypten never load it.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from secure_ml.errors import DependencyError

CRYPTEN_VERSION = "0.4.1"
INSTALL_HINT = f"pip install --no-deps crypten=={CRYPTEN_VERSION}"

_lock = threading.Lock()
_patched: ModuleType | None = None


def crypten_installed() -> bool:
    """True when the crypten distribution is importable (without importing it)."""
    try:
        return importlib.util.find_spec("crypten") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def load_crypten() -> ModuleType:
    """Import crypten with every compat patch applied (idempotent, thread-safe)."""
    global _patched
    if _patched is not None:
        return _patched
    with _lock:
        if _patched is None:
            _patched = _import_and_patch()
    return _patched


def _import_and_patch() -> ModuleType:
    if not crypten_installed():
        raise DependencyError(
            "crypten is not installed. It cannot be installed with its own "
            "metadata (it requires the dead 'sklearn' package); install it with: "
            f"{INSTALL_HINT}  (or run `make test`, which sets up .venv)"
        )
    from secure_ml.compat import onnx_import

    crypten = onnx_import.import_crypten()
    _patch(crypten)  # a no-op when the import hook already did it
    return crypten


def _patch(crypten: ModuleType) -> None:
    """Repair an imported crypten once (the module is marked when patched)."""
    global _patched
    if getattr(crypten, "_secure_ml_patched", False):
        return
    from secure_ml.compat import decode, from_pytorch, serialization

    decode.apply(crypten)
    serialization.apply(crypten)
    from_pytorch.apply(crypten)
    crypten._secure_ml_patched = True
    _patched = crypten


# ------------------------------------------------------------ import hook --


class _PatchingLoader:
    """Wraps crypten's own loader: bridge its import, then patch it."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        from secure_ml.compat import onnx_import

        with onnx_import.registration_bridge():
            self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name: str) -> Any:
        # resource readers, get_data, ... of the wrapped loader
        return getattr(self._loader, name)


class CryptenImportHook:
    """A ``sys.meta_path`` finder that hands out crypten with the patches applied."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "crypten":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install_import_hook() -> None:
    """Make a plain ``import crypten`` return the patched module (idempotent)."""
    if any(isinstance(finder, CryptenImportHook) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, CryptenImportHook())
    if "crypten" in sys.modules:  # imported before us (it imports on torch 1.x)
        _patch(sys.modules["crypten"])
