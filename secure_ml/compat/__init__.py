"""CrypTen 0.4.1 on torch 2.x: the patches, applied once, before first use.

``load_crypten()`` is the only sanctioned way to obtain the ``crypten`` module
inside ``secure_ml``. It makes the import work on torch 2.x and then repairs
behaviour that is wrong or broken there (see each submodule's docstring):

- ``onnx_import``: crypten imports torch.onnx internals that no longer exist;
- ``decode``: ``FixedPointEncoder.decode`` is off by 1.0 for some negatives;
- ``serialization``: ``crypten.load`` under torch's ``weights_only=True``;
- ``from_pytorch``: ONNX export needs ``dynamo=False`` and an Identity op.
"""

from __future__ import annotations

import importlib.util
import threading
from types import ModuleType

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
    from secure_ml.compat import decode, from_pytorch, onnx_import, serialization

    crypten = onnx_import.import_crypten()
    decode.apply(crypten)
    serialization.apply(crypten)
    from_pytorch.apply(crypten)
    return crypten
