"""Protocol registry: a spec's ``[protocol] name`` -> its implementation.

Implementations are imported only when a run needs them, so that validating a
spec (``secure-ml spec check``) never imports crypten.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secure_ml.protocols.base import Fail, Protocol
    from secure_ml.spec import Spec

#: a user function run on every party with ``secure_ml.run(fn, spec)``
PYTHON_FUNCTION = "python"

REGISTRY: dict[str, str] = {
    "mpc.train": "secure_ml.protocols.train:MPCTrain",
    "mpc.infer": "secure_ml.protocols.infer:MPCInfer",
}


def get_protocol(name: str) -> type[Protocol]:
    """The implementation registered under ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_spec(spec: Spec, fail: Fail) -> None:
    """Check the protocol name, then the protocol's own requirements."""
    name = spec.protocol.name
    if name == PYTHON_FUNCTION:
        return
    if name not in REGISTRY:
        known = ", ".join(repr(n) for n in (*sorted(REGISTRY), PYTHON_FUNCTION))
        from secure_ml.spec import shown

        raise fail("[protocol]", f"name = {shown(name)}: must be one of {known}")
    get_protocol(name).check_spec(spec, fail)
