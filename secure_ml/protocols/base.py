"""What every protocol provides to the launcher and to the party entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from secure_ml.data.local import uses_csv
from secure_ml.data.sources import check_source, describe_sources
from secure_ml.errors import SecureMLError
from secure_ml.sections import Fail

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec

__all__ = [
    "Fail", "PartyOutput", "Protocol", "require_builtin_source", "require_crypten_parties",
]  # fmt: skip


@dataclass
class PartyOutput:
    """What one party reports at the end of a protocol run."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per named stage
    #: what was released under differential privacy (result.json's ``privacy``);
    #: the same on every compute party, so the first record's is the run's
    privacy: dict[str, Any] | None = None


class Protocol:
    """A protocol: checks a spec, runs on every compute party, has a baseline."""

    name: ClassVar[str]
    #: whether the protocol computes on CrypTen shares. A protocol that does
    #: not (HE inference, say) runs with every party ``crypten = false`` and
    #: no dealer, and crypten is never imported in its processes.
    needs_crypten: ClassVar[bool] = True

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        """Raise ``fail(where, message)`` when the spec does not fit this protocol."""

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        """Run this party's part (compute parties only; the dealer serves triples)."""
        raise NotImplementedError

    @classmethod
    def plaintext_reference(cls, spec: Spec, party_dirs: dict[str, Path]) -> dict[str, Any]:
        """Metrics of the same computation in plaintext, where the data is public.

        Runs in the launcher after the parties finished; ``party_dirs`` holds
        each party's output folder (on this host).
        """
        return {}


def require_crypten_parties(protocol: str, spec: Spec, fail: Fail) -> None:
    """Refuse parties outside CrypTen's world, for a protocol that runs all in it."""
    for party in spec.parties:
        if not party.crypten:
            raise fail(
                f"[[party]] {party.name}",
                f"{protocol} runs every party in CrypTen's world; party {party.name} has "
                "crypten = false (remove it, or set crypten = true)",
            )


def require_builtin_source(protocol: str, spec: Spec, fail: Fail) -> None:
    """Refuse per-party CSVs and a missing or unknown ``[data] source``."""
    if uses_csv(spec):
        raise fail("[[party]]", f"{protocol} reads built-in sources only (no CSV data yet)")
    if spec.data.source is None:
        raise fail("[data]", f"source is missing: one of {describe_sources()}")
    try:
        check_source(spec.data.source)
    except SecureMLError as e:
        raise fail("[data]", str(e).removeprefix("[data] ")) from None
