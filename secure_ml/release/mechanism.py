"""Release mechanisms: what a ``reveal`` does to a value before it is opened.

A mechanism (differential privacy's Gaussian or Laplace noise and its budget
charge, in a later issue) hooks into ``reveal(session, value, to=[...],
mechanism=...)``. Stages, on every compute party, in this order:

1. ``charge(release)``: the mechanism accounts for the release (e.g. charges
   the privacy budget of every owner whose data the value touches) and may
   refuse by raising (``PrivacyBudgetExceeded``). Budgets live in each
   owner's own ledger, so the parties may first exchange one verdict each
   ("my ledger can pay", ``secure_ml.release.dp``); nothing of the value is
   sent, and a refusal stops every party before any share moves.
2. ``perturb(release, value)``: the mechanism transforms the value ON SHARES
   and returns a shared value, e.g. each party adds its own share of noise, so
   that no coalition of parties short of all of them knows the noise. What is
   sent here is what the mechanism's CrypTen ops send (adding a public or
   locally shared value sends nothing); no share is opened.
3. open: ``reveal`` sends the shares of the perturbed value to the receivers
   only, as without a mechanism (see ``secure_ml.release.reveal``).

Every compute party must pass the same mechanism to the same reveal (they run
the same code): a party that skipped ``perturb`` would open a different value
(and, with noise, leave out its share of the noise). ``reveal`` does not check
this, because a check would cost a round before the charge.

``RevealSession`` is what ``reveal`` needs of a session (``Session`` is one),
so that ``release/`` never imports ``secure_ml.session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from secure_ml.parties import Roster


class RevealSession(Protocol):
    """What ``reveal`` needs of a session: who is who, and where to record."""

    @property
    def roster(self) -> Roster: ...

    @property
    def rank(self) -> int: ...

    def record_reveal(
        self, name: str, receivers: list[str], *, mechanism: str | None = None
    ) -> None: ...


@dataclass(frozen=True)
class Release:
    """One reveal, as a mechanism sees it (the same on every compute party)."""

    #: what is revealed (the key of ``revealed_to`` in result.json)
    name: str
    #: the receivers' party names, in ``to`` order, without duplicates
    receivers: tuple[str, ...]
    #: the shape of the shared value before ``perturb``
    shape: tuple[int, ...]
    #: the revealing party's session: roster, rank (and the rest of Session)
    session: RevealSession

    @property
    def roster(self) -> Roster:
        return self.session.roster

    @property
    def rank(self) -> int:
        """The rank of the party running this copy of the mechanism."""
        return self.session.rank


@runtime_checkable
class ReleaseMechanism(Protocol):
    """A release mechanism: a name, a charge and a perturbation on shares."""

    @property
    def name(self) -> str:
        """Recorded with each reveal that used it (``Session.release_mechanisms``)."""
        ...

    def charge(self, release: Release) -> None:
        """Account for ``release``; raise to refuse it. Sends no share of the value."""
        ...

    def perturb(self, release: Release, value: Any) -> Any:
        """Return the shared value to open in place of ``value`` (CrypTen ops on shares)."""
        ...


def mechanism_name(mechanism: Any) -> str:
    """The name of ``mechanism``, after checking that it is a ``ReleaseMechanism``."""
    missing = [
        member
        for member in ("name", "charge", "perturb")
        if not hasattr(mechanism, member)
        or (member != "name" and not callable(getattr(mechanism, member)))
    ]
    if missing:
        raise TypeError(
            f"mechanism= takes a ReleaseMechanism (a name, charge(release) and "
            f"perturb(release, value)); {type(mechanism).__name__} lacks {', '.join(missing)}"
        )
    name = mechanism.name
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"the name of mechanism {type(mechanism).__name__} must be a non-empty string, "
            f"not {name!r}"
        )
    return name
