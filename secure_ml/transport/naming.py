"""How every transport error names a process: ``party NAME (rank R)``."""

from __future__ import annotations

from collections.abc import Sequence


def describe(rank: int, names: Sequence[str]) -> str:
    """``party NAME (rank R)``, or the rank alone when the name is not known."""
    if rank < len(names):
        return f"party {names[rank]} (rank {rank})"
    return f"the party of rank {rank}"
