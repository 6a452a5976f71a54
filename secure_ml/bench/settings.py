"""A suite's knobs, shared by the task modules (kept apart so that they import no task)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Knobs a suite sets for every task (small in the quick suite)."""

    epochs: int = 5
    batch_size: int = 64
    hidden: tuple[int, ...] = (32,)
    seed: int = 0
    #: rows of the HE task's one-sample-per-ciphertext runs (per_sample, naive)
    he_samples: int = 5
