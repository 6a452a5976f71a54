"""secure_ml: MPC-first secure machine learning on CrypTen.

Importing ``secure_ml`` does not import crypten or torch; they are loaded when
a session starts. ``secure_ml.compat.load_crypten()`` explains a missing
crypten with the exact install command. Once ``secure_ml`` is imported, a plain
``import crypten`` works on torch 2.x too: an import hook applies the compat
patches when crypten is first imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secure_ml.compat import install_import_hook
from secure_ml.errors import SecureMLError
from secure_ml.spec import Spec, load_spec, spec_from_dict

install_import_hook()

__version__ = "0.1.0"
__all__ = ["SecureMLError", "Session", "Spec", "load_spec", "run", "run_protocol", "spec_from_dict"]

if TYPE_CHECKING:
    from secure_ml.api import run, run_protocol
    from secure_ml.session import Session


def __getattr__(name: str) -> Any:
    # Lazy: `import secure_ml` stays light for `spec check` and the CLI help.
    if name in ("run", "run_protocol"):
        from secure_ml import api

        return getattr(api, name)
    if name == "Session":
        from secure_ml.session import Session

        return Session
    raise AttributeError(f"module 'secure_ml' has no attribute {name!r}")
