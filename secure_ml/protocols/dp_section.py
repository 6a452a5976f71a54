"""The ``[dp]`` section: a differential-privacy budget and clipping bound.

DP is added to protocols by composition (DESIGN.md §5), so ``[dp]`` belongs to
no one family: ``secure_ml.protocols.SHARED_SECTIONS`` lists this module, and
each protocol says in its ``check_spec`` whether it applies ``[dp]`` (today
``mpc.train`` and ``mpc.infer`` refuse it rather than ignore it).

It is here rather than in ``secure_ml/release/`` (where the mechanisms will
live) because importing anything under ``secure_ml.release`` runs its
``__init__``, which imports ``reveal`` and torch; a section module must stay
light (``secure-ml spec check`` imports every one).
"""

from __future__ import annotations

from dataclasses import dataclass

from secure_ml.sections import (
    NUMBER,
    Key,
    Section,
    non_negative_int,
    one_of,
    positive,
    probability,
    register_section,
    unhashed,
)

#: Opacus's accountants by their names in the spec (``secure_ml.release.accounting``)
ACCOUNTANTS = ("rdp", "prv", "gdp")
#: whom [dp] epsilon is the target against
PROTECT_AGAINST = ("outsiders", "parties")


@dataclass(frozen=True)
class DPSpec:
    epsilon: float
    delta: float
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    #: the largest coalition of compute parties the noise stays hidden from
    #: (None: n - 1, the coalition additive sharing tolerates)
    collusion_threshold: int | None = None
    #: this data owner's budget ledger (a JSON file; party-local)
    ledger: str | None = None
    #: whom ``epsilon`` must hold against: "outsiders" (who see only what is
    #: released) or also "parties" (who may see more, e.g. which rows a step used)
    protect_against: str = "outsiders"


DP = register_section(
    Section(
        name="dp",
        cls=DPSpec,
        keys={
            "epsilon": Key(NUMBER, positive),
            "delta": Key(NUMBER, probability),
            "max_grad_norm": Key(NUMBER, positive),
            "accountant": Key((str,), one_of(ACCOUNTANTS), omit_default=True),
            "collusion_threshold": Key((int,), non_negative_int),
            "ledger": Key((str,), hash_as=unhashed),
            "protect_against": Key((str,), one_of(PROTECT_AGAINST), omit_default=True),
        },
        required=("epsilon", "delta"),
        optional=True,
        owner=__name__,
    )
)
