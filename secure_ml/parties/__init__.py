"""Parties: who takes part in a run, under which rank, in which roles.

Compute parties form CrypTen's world, ranks ``0..n-1`` in ``[[party]]`` order.
The dealer (CrypTen's trusted third party) is not a ``[[party]]``; when the spec
asks for one it is the extra, last rank ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

DATA_OWNER = "data_owner"
LABEL_OWNER = "label_owner"
MODEL_OWNER = "model_owner"
COMPUTE = "compute"
RECEIVER = "receiver"
ROLES = (DATA_OWNER, LABEL_OWNER, MODEL_OWNER, COMPUTE, RECEIVER)

DEALER_NAME = "dealer"
DEALER_ROLE = "dealer"


@dataclass(frozen=True)
class Party:
    """One participant of a run."""

    name: str
    rank: int
    roles: tuple[str, ...]

    @property
    def is_dealer(self) -> bool:
        return DEALER_ROLE in self.roles

    def has(self, role: str) -> bool:
        return role in self.roles

    def describe(self) -> dict:
        return {"name": self.name, "rank": self.rank, "roles": list(self.roles)}


@dataclass(frozen=True)
class Roster:
    """All parties of a run: the compute parties in rank order, and the dealer."""

    parties: tuple[Party, ...]
    dealer: Party | None

    @property
    def world_size(self) -> int:
        """Number of compute parties (CrypTen's WORLD_SIZE; excludes the dealer)."""
        return len(self.parties)

    @property
    def processes(self) -> tuple[Party, ...]:
        """Every process of the run: compute parties, then the dealer if any."""
        return self.parties + ((self.dealer,) if self.dealer is not None else ())

    def by_name(self, name: str) -> Party:
        for party in self.processes:
            if party.name == name:
                return party
        known = ", ".join(p.name for p in self.processes)
        raise KeyError(f"no party named {name!r}; the parties are: {known}")

    def by_rank(self, rank: int) -> Party:
        for party in self.processes:
            if party.rank == rank:
                return party
        raise KeyError(f"no party with rank {rank}; ranks are 0..{len(self.processes) - 1}")

    def with_role(self, role: str) -> tuple[Party, ...]:
        return tuple(p for p in self.parties if p.has(role))
