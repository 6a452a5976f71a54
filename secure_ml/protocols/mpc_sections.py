"""The mpc family's spec sections: ``[train]`` and ``[infer]``.

Registered here, not in ``secure_ml.spec``, so the family owns its schema;
imported by ``secure_ml.protocols.load_sections`` when a spec is validated.
Light on purpose (no torch, no crypten): ``secure-ml spec check`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from secure_ml.sections import (
    BOOL,
    NUMBER,
    Key,
    Section,
    at_least_one,
    positive,
    register_section,
    unit_interval_open_right,
)


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.5
    momentum: float = 0.0
    keep_shared: bool = False


@dataclass(frozen=True)
class InferSpec:
    batch_size: int = 64


TRAIN = register_section(
    Section(
        name="train",
        cls=TrainSpec,
        keys={
            "epochs": Key((int,), at_least_one),
            "batch_size": Key((int,), at_least_one),
            "lr": Key(NUMBER, positive),
            "momentum": Key(NUMBER, unit_interval_open_right),
            "keep_shared": BOOL,
        },
        owner=__name__,
    )
)

INFER = register_section(
    Section(
        name="infer",
        cls=InferSpec,
        keys={"batch_size": Key((int,), at_least_one)},
        owner=__name__,
    )
)
