"""A data owner's privacy-budget ledger: a JSON file that only ever grows.

Each party keeps, at a party-local path (spec key ``dp.ledger``), one ledger
per data owner: the owner's budget (ε, δ), the accountant, and every release
charged against it. A release is charged BEFORE it happens (the mechanism's
``charge``), so the file never records less than was released; a crash after
the charge and before the release can only make it record one release too
many, which errs on the side of privacy.

Composition. Gaussian entries are composed together through the accountant
(``epsilon_for``: RDP by default, far tighter than adding their ε); Laplace
entries are pure ε and are summed. The two totals are added (basic
composition), so the ledger spends (ε_gaussian + ε_laplace, δ) with the
ledger's δ, or δ = 0 while it holds no Gaussian entry.

Durability. ``charge`` holds an exclusive ``fcntl.flock`` on ``<path>.lock``
while it reads, decides and writes; it writes a temporary file in the same
directory, fsyncs it, renames it over the ledger (``os.replace``, atomic) and
fsyncs the directory. A reader therefore sees the old or the new ledger, never
a mix, and two processes cannot both spend the last of a budget.

A missing file is a fresh ledger. A file that does not parse, or that belongs
to another owner, budget or accountant, is refused, never reset: resetting
would forget what was spent and let the owner's data be overspent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from secure_ml.errors import DataError, PrivacyBudgetExceeded, SpecError
from secure_ml.release.accounting import (
    GaussianSteps,
    check_accountant,
    check_delta,
    check_epsilon,
    epsilon_for,
)

#: the version of the ledger's JSON layout
FORMAT = 1

_ENTRY_KEYS = {
    "gaussian": {"kind", "noise_multiplier", "sample_rate", "steps", "name"},
    "laplace": {"kind", "epsilon", "name"},
}


class Ledger:
    """The privacy budget of one data owner, persisted at ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        owner: str,
        epsilon: float,
        delta: float,
        accountant: str = "rdp",
    ) -> None:
        if not isinstance(owner, str) or not owner:
            raise ValueError(f"owner must be a non-empty string, not {owner!r}")
        check_epsilon(epsilon)
        check_delta(delta)
        check_accountant(accountant)
        self.path = Path(path)
        self.owner, self.epsilon, self.delta = owner, float(epsilon), float(delta)
        self.accountant = accountant

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def entries(self) -> list[dict[str, Any]]:
        """The releases charged so far, oldest first."""
        return self._read()

    def spent(self) -> tuple[float, float]:
        """The (ε, δ) spent so far (δ is 0 until a Gaussian release is charged)."""
        entries = self._read()
        return self._epsilon_of(entries), self._delta_of(entries)

    def remaining(self) -> float:
        """The ε left at the ledger's δ."""
        return max(self.epsilon - self.spent()[0], 0.0)

    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise ``PrivacyBudgetExceeded`` if charging ``entry`` now would overspend.

        Writes nothing, so a release touching several owners can check every
        owner's ledger before charging any. ``charge`` decides again under the
        lock, since another process may have charged in between.
        """
        entry = validate_entry(entry)
        self._decide(self._read(), entry)

    def charge(self, entry: Mapping[str, Any]) -> None:
        """Record ``entry``, or raise ``PrivacyBudgetExceeded`` and record nothing."""
        entry = validate_entry(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            entries = self._read()
            self._decide(entries, entry)
            self._write([*entries, entry])

    def _decide(self, entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        """Refuse ``entry`` if the ledger with it added would spend more than the budget."""
        before = self._epsilon_of(entries)
        after = self._epsilon_of([*entries, entry])
        if after <= self.epsilon:
            return
        raise PrivacyBudgetExceeded(
            f"release {entry['name']!r} refused: it would raise the privacy spent on "
            f"owner {self.owner!r}'s data from ε={before:.6g} to ε={after:.6g} "
            f"(cost ε={after - before:.6g} at δ={self.delta:g}), over the budget "
            f"ε={self.epsilon:g}; spent ε={before:.6g}, left ε={self.epsilon - before:.6g}. "
            f"Nothing was released (ledger {self.path})"
        )

    def _epsilon_of(self, entries: Sequence[Mapping[str, Any]]) -> float:
        """Accountant composition of the Gaussian entries plus the sum of the Laplace ones."""
        history = [
            GaussianSteps(e["noise_multiplier"], e["sample_rate"], e["steps"])
            for e in entries
            if e["kind"] == "gaussian"
        ]
        laplace = math.fsum(e["epsilon"] for e in entries if e["kind"] == "laplace")
        gaussian = epsilon_for(history, self.delta, accountant=self.accountant) if history else 0.0
        return gaussian + laplace

    def _delta_of(self, entries: Sequence[Mapping[str, Any]]) -> float:
        return self.delta if any(e["kind"] == "gaussian" for e in entries) else 0.0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive lock on ``<path>.lock`` (released when the process dies)."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> list[dict[str, Any]]:
        """The entries on file (none if there is no file), after checking whose file it is."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text)
            entries = [validate_entry(e) for e in data["entries"]]
            recorded = (data["format"], data["owner"], data["budget"], data["accountant"])
        except (ValueError, TypeError, KeyError) as error:
            raise DataError(
                f"privacy ledger {self.path} is corrupt ({error}); it is not reset, because "
                f"that would forget what was spent: restore it from a backup"
            ) from None
        self._check_recorded(*recorded)
        return entries

    def _check_recorded(self, fmt: Any, owner: Any, budget: Any, accountant: Any) -> None:
        """Refuse a ledger written for another owner, budget, accountant or format."""
        expected = {"epsilon": self.epsilon, "delta": self.delta}
        if (fmt, owner, budget, accountant) == (FORMAT, self.owner, expected, self.accountant):
            return
        raise SpecError(
            f"privacy ledger {self.path} records format {fmt!r}, owner {owner!r}, budget "
            f"{budget!r}, accountant {accountant!r}, but it was opened as format {FORMAT}, "
            f"owner {self.owner!r}, budget {expected!r}, accountant {self.accountant!r}: "
            f"point dp.ledger at this owner's own ledger or give the budget and accountant "
            f"it was created with (the file is not reset: that would forget what was spent)"
        )

    def _write(self, entries: list[dict[str, Any]]) -> None:
        """Replace the ledger atomically and durably (temp file, fsync, rename, fsync dir)."""
        data = {
            "format": FORMAT,
            "owner": self.owner,
            "budget": {"epsilon": self.epsilon, "delta": self.delta},
            "accountant": self.accountant,
            "spent": {"epsilon": self._epsilon_of(entries), "delta": self._delta_of(entries)},
            "entries": entries,
        }
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_directory(directory)


def validate_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of ``entry`` after checking its kind, keys and values."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"a ledger entry is a mapping, not {type(entry).__name__}")
    kind = entry.get("kind")
    if kind not in _ENTRY_KEYS:
        raise ValueError(f"ledger entry kind must be 'gaussian' or 'laplace', not {kind!r}")
    if set(entry) != _ENTRY_KEYS[kind]:
        raise ValueError(
            f"a {kind} ledger entry has exactly the keys {sorted(_ENTRY_KEYS[kind])}, "
            f"not {sorted(entry)}"
        )
    if not isinstance(entry["name"], str):
        raise ValueError(f"ledger entry name must be a string, not {entry['name']!r}")
    if kind == "gaussian":
        GaussianSteps(entry["noise_multiplier"], entry["sample_rate"], entry["steps"])
    else:
        check_epsilon(entry["epsilon"])
    return dict(entry)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: fsync the directory that holds the ledger."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
