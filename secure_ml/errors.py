"""The exception tree of secure_ml and the exit code of each exception.

Every error a user can cause or meet is a subclass of ``SecureMLError`` and
carries a message that says what to change. The CLI maps each class to a stable
exit code (``exit_code_for``); ``EXIT_CODES`` lists every class.
"""

from __future__ import annotations


class SecureMLError(Exception):
    """Base class of every error raised on purpose by secure_ml."""


class SpecError(SecureMLError):
    """A spec is malformed: names the key, the bad value and what is allowed."""


class DependencyError(SecureMLError):
    """A required package is missing or broken; says how to install it."""


class UnsafeConfigurationError(SpecError):
    """A spec asks for a setting that weakens security without saying so explicitly
    (e.g. ``dealer = "tfp"`` without ``insecure_dealer = true``)."""


class DataError(SecureMLError):
    """Input data is unusable (missing file, bad row, NaN, shape mismatch)."""


class FixedPointRangeError(DataError):
    """A value does not fit CrypTen's fixed-point ring safely."""


class ProtocolAbort(SecureMLError):
    """A protocol stopped on purpose because continuing would be wrong."""


class SpecMismatchError(ProtocolAbort):
    """The parties of one run were started with different specs."""


class PeerLost(ProtocolAbort):
    """A message to or from one peer could not be delivered (it died or fell silent).

    ``peer`` is that peer's rank: a protocol that lets an ``optional`` party
    drop out catches this for that party and goes on without it.
    ``lost_first`` is the party lost first: ``peer`` itself, or the party
    ``peer`` had lost when it stopped (``secure_ml.transport.notices``).
    """

    #: the launcher ranks it as a consequence of the peer's failure, not a cause
    echo = True

    def __init__(self, message: str, *, peer: int, lost_first: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer
        self.lost_first = peer if lost_first is None else lost_first


class ChannelError(ProtocolAbort):
    """An encrypted channel between two processes failed: a peer could not prove
    its identity with its long-term key, or a message failed authentication
    (tampered with, replayed, reordered, or one before it was dropped)."""


class CiphertextError(ProtocolAbort):
    """A peer's HE context or ciphertext is malformed, insecure or does not match the plan."""


class PrivacyBudgetExceeded(SecureMLError):
    """A release mechanism refused a reveal: it would overspend a privacy budget.

    Raised by the mechanism's ``charge`` on every compute party, before any
    share of the value is sent (see ``secure_ml.release.mechanism``).
    """


class KeyMaterialError(SecureMLError):
    """A party key file is missing, malformed, exposed, or would be overwritten."""


class PartyFailure(SecureMLError):
    """A party process failed (raised, exited non-zero, was killed or stalled).

    ``exit_code`` is the exit code of the party's own error when the party
    reported one (5 for its ``DataError``, 70 for a bug, ...), so the launcher
    exits as the party did; it is None for a party that died without saying why
    (killed, crashed, frozen), which exits with ``PartyFailure``'s own code.
    """

    def __init__(self, party: str, cause: str, *, exit_code: int | None = None) -> None:
        super().__init__(f"party {party} failed: {cause}")
        self.party = party
        self.cause = cause
        self.exit_code = exit_code


class LaunchTimeout(SecureMLError):
    """The whole run exceeded its time limit."""


class OutputInUse(SecureMLError):
    """Another run holds the output folder (two runs would overwrite each other)."""


EXIT_CODES: dict[type[SecureMLError], int] = {
    SecureMLError: 1,
    SpecError: 2,
    DependencyError: 3,
    UnsafeConfigurationError: 4,
    DataError: 5,
    FixedPointRangeError: 6,
    ProtocolAbort: 7,
    SpecMismatchError: 8,
    PartyFailure: 9,
    LaunchTimeout: 10,
    OutputInUse: 11,
    PrivacyBudgetExceeded: 12,
    PeerLost: 13,
    KeyMaterialError: 14,
    ChannelError: 15,
    CiphertextError: 16,
}

#: exit code for an exception that is not a SecureMLError (a bug, or Ctrl-C)
UNEXPECTED_EXIT_CODE = 70
INTERRUPTED_EXIT_CODE = 130


def exit_code_for(error: BaseException) -> int:
    """The exit code of ``error``: its own class's, else its nearest ancestor's.

    A ``PartyFailure`` exits with the code of the party's own error when the
    party reported one, so a bad CSV cell exits 5 whether it was met in the
    launcher or in a party; anything that is not a ``SecureMLError`` is a bug
    and exits 70.
    """
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED_EXIT_CODE
    if isinstance(error, PartyFailure) and error.exit_code is not None:
        return error.exit_code
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return UNEXPECTED_EXIT_CODE
