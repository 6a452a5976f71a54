"""``crypten.load`` under torch's ``weights_only=True`` default.

Since torch 2.6, ``torch.load`` refuses to unpickle anything but tensors and
plain containers unless told otherwise, and ``crypten.load`` calls it without
arguments, so shares saved with ``crypten.save`` can no longer be read back.
Rather than turning the safe loader off, we allow-list exactly the CrypTen
classes that make up a saved CrypTensor, so loading stays restricted.
"""

from __future__ import annotations

from types import ModuleType

import torch


def crypten_safe_globals(crypten: ModuleType) -> list[object]:
    """The classes a pickled MPCTensor is made of (found by saving one)."""
    from crypten.encoder import FixedPointEncoder
    from crypten.gradients import AutogradContext
    from crypten.mpc.mpc import MPCTensor
    from crypten.mpc.primitives.arithmetic import ArithmeticSharedTensor
    from crypten.mpc.primitives.binary import BinarySharedTensor
    from crypten.mpc.ptype import ptype

    return [
        MPCTensor,
        ArithmeticSharedTensor,
        BinarySharedTensor,
        FixedPointEncoder,
        AutogradContext,
        ptype,
    ]


def apply(crypten: ModuleType) -> None:
    """Allow-list CrypTen's share classes for ``torch.load``."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 loads them anyway
        add_safe_globals(crypten_safe_globals(crypten))
