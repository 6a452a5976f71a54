"""Protocol registry: a spec's ``[protocol] name`` -> its implementation.

Protocols come in families (``FAMILIES``); a family names its protocols'
implementations and the module that registers its own spec sections (see
``secure_ml.sections``); ``SHARED_SECTIONS`` registers the sections no one
family owns (``[dp]``). Both are imported only when needed, by name: section
modules when a spec is validated (they are light), implementations when a
protocol checks a spec or runs, so that ``secure-ml spec check`` on a python
spec never imports crypten.

This module imports neither ``secure_ml.spec`` nor any implementation, not
even for type checking: ``secure_ml.spec`` imports it, and the import graph
stays free of cycles (``tests/unit/test_import_cycles.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secure_ml.sections import Fail, shown

#: a user function run on every party with ``secure_ml.run(fn, spec)``
PYTHON_FUNCTION = "python"


@dataclass(frozen=True)
class Family:
    """Protocols that share spec sections."""

    name: str
    #: protocol name -> "module:Class" of its ``secure_ml.protocols.base.Protocol``
    protocols: Mapping[str, str]
    #: modules that register the family's spec sections when imported
    sections: tuple[str, ...] = field(default=())


FAMILIES: tuple[Family, ...] = (
    Family(
        name="mpc",
        protocols={
            "mpc.train": "secure_ml.protocols.train:MPCTrain",
            "mpc.infer": "secure_ml.protocols.infer:MPCInfer",
        },
        sections=("secure_ml.protocols.mpc_sections",),
    ),
    Family(
        name="dp",
        protocols={"dp.stats": "secure_ml.protocols.stats:DPStats"},
        sections=("secure_ml.protocols.stats_section",),
    ),
    Family(
        name="he",
        protocols={"he.infer": "secure_ml.protocols.he_infer:HEInfer"},
        sections=("secure_ml.protocols.he_section",),
    ),
)

#: modules registering sections that protocols of several families may read
SHARED_SECTIONS: tuple[str, ...] = ("secure_ml.protocols.dp_section",)

REGISTRY: dict[str, str] = {
    name: target for family in FAMILIES for name, target in family.protocols.items()
}


def load_sections() -> None:
    """Import every family's section modules and the shared ones, so that their
    sections are registered (the families' first, in ``FAMILIES`` order)."""
    for family in FAMILIES:
        for module in family.sections:
            importlib.import_module(module)
    for module in SHARED_SECTIONS:
        importlib.import_module(module)


def get_protocol(name: str) -> Any:
    """The implementation (a ``secure_ml.protocols.base.Protocol`` subclass) of ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_spec(spec: Any, fail: Fail) -> None:
    """Check a ``secure_ml.spec.Spec``'s protocol name, then the protocol's own requirements."""
    name = spec.protocol.name
    if name == PYTHON_FUNCTION:
        return
    if name not in REGISTRY:
        known = ", ".join(repr(n) for n in (*sorted(REGISTRY), PYTHON_FUNCTION))
        raise fail("[protocol]", f"name = {shown(name)}: must be one of {known}")
    protocol = get_protocol(name)
    _check_world(name, protocol.needs_crypten, spec, fail)
    protocol.check_spec(spec, fail)


def _check_world(name: str, needs_crypten: bool, spec: Any, fail: Fail) -> None:
    """A protocol on CrypTen needs compute parties; one without it takes none."""
    in_crypten = [p.name for p in spec.parties if p.crypten]
    if needs_crypten and not in_crypten:
        raise fail("[[party]]", f"{name} computes on CrypTen shares: at least one party needs "
                   "crypten = true (the default)")  # fmt: skip
    if not needs_crypten and in_crypten:
        raise fail(f"[[party]] {in_crypten[0]}", f"{name} runs without CrypTen: set "
                   f"crypten = false on every party (found crypten = true)")  # fmt: skip
