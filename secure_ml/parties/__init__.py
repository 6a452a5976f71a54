"""Parties: who takes part in a run, under which rank, in which roles.

Compute parties (``[[party]] crypten = true``, the default) form CrypTen's
world, ranks ``0..n-1`` in ``[[party]]`` order. The dealer (CrypTen's trusted
third party) is not a ``[[party]]``; when the spec asks for one it is rank
``n``. Parties outside CrypTen's world (``crypten = false``: input-only or
non-MPC parties, which never import crypten but still have links to the
others) come last, in ``[[party]]`` order.
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

#: ``[[party]] failure``: a required party's death fails the run (today's
#: behaviour); an optional one's is left to the protocol (outside parties only)
REQUIRED = "required"
OPTIONAL = "optional"
FAILURES = (REQUIRED, OPTIONAL)


@dataclass(frozen=True)
class Party:
    """One participant of a run."""

    name: str
    rank: int
    roles: tuple[str, ...]
    #: False: outside CrypTen's world (never imports crypten; has links to the others)
    crypten: bool = True
    #: REQUIRED or OPTIONAL (see FAILURES)
    failure: str = REQUIRED

    @property
    def is_dealer(self) -> bool:
        return DEALER_ROLE in self.roles

    def has(self, role: str) -> bool:
        return role in self.roles

    def describe(self) -> dict:
        """For result.json; the new keys only when not at their defaults, so that
        results of runs without outside parties stay as they were."""
        out: dict = {"name": self.name, "rank": self.rank, "roles": list(self.roles)}
        if not self.crypten:
            out["crypten"] = False
        if self.failure != REQUIRED:
            out["failure"] = self.failure
        return out


@dataclass(frozen=True)
class Roster:
    """All parties of a run: the compute parties in rank order, the dealer, and
    the parties outside CrypTen's world."""

    #: the CrypTen compute parties, ranks 0..n-1
    parties: tuple[Party, ...]
    dealer: Party | None
    #: parties outside CrypTen's world, ranks after the dealer's
    outside: tuple[Party, ...] = ()

    @property
    def world_size(self) -> int:
        """Number of compute parties (CrypTen's WORLD_SIZE; excludes the dealer)."""
        return len(self.parties)

    @property
    def crypten_world(self) -> bool:
        """Whether the run has a CrypTen world at all (any compute party)."""
        return bool(self.parties)

    @property
    def processes(self) -> tuple[Party, ...]:
        """Every process of the run in rank order: compute parties, the dealer
        if any, then the parties outside CrypTen's world."""
        dealer = (self.dealer,) if self.dealer is not None else ()
        return self.parties + dealer + self.outside

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
        """Every ``[[party]]`` with ``role``, compute parties and outside ones, in rank order."""
        return tuple(p for p in self.parties + self.outside if p.has(role))
