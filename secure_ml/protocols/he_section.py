"""The he family's spec section: ``[he]`` (how ``he.infer`` packs, encrypts and answers).

Registered here, not in ``secure_ml.spec``, so the family owns its schema;
imported by ``secure_ml.protocols.load_sections`` when a spec is validated.
Light on purpose (no torch, no tenseal): ``secure-ml spec check`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from secure_ml.sections import (
    NUMBER,
    Key,
    Section,
    non_negative_int,
    one_of,
    positive,
    register_section,
)

MODES = ("batched", "per_sample")
OUTPUTS = ("logits", "probabilities")
#: 0 = chosen from the model's depth and value range
DEGREES = (0, 8192, 16384, 32768)


@dataclass(frozen=True)
class HESpec:
    #: batched: one ciphertext per input feature across up to N/2 samples (no
    #: rotations); per_sample: one ciphertext per sample (rotations, Galois keys)
    mode: str = "batched"
    #: logits: the client applies sigmoid/softmax after decrypting; probabilities
    #: (binary models): the server evaluates a cubic sigmoid on ciphertexts
    output: str = "logits"
    #: the client clamps every standardised input value to [-input_bound, input_bound]
    input_bound: float = 4.0
    poly_modulus_degree: int = 0
    #: bits of the CKKS scale; 0 = 30 at N = 8192, 40 above
    scale_bits: int = 0
    #: encrypt only the first rows of the client's inputs (0 = all)
    max_samples: int = 0


def _degree(value: Any) -> str | None:
    return None if value in DEGREES else "one of 0 (automatic), 8192, 16384, 32768"


def _scale(value: Any) -> str | None:
    return None if value == 0 or 20 <= value <= 50 else "0 (automatic) or 20..50"


HE = register_section(
    Section(
        name="he",
        cls=HESpec,
        keys={
            "mode": Key((str,), one_of(MODES)),
            "output": Key((str,), one_of(OUTPUTS)),
            "input_bound": Key(NUMBER, positive),
            "poly_modulus_degree": Key((int,), _degree),
            "scale_bits": Key((int,), _scale),
            "max_samples": Key((int,), non_negative_int),
        },
        omit_default=True,
        owner=__name__,
    )
)
