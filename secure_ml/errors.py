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


class PartyFailure(SecureMLError):
    """A party process failed (raised, exited non-zero, was killed or stalled)."""

    def __init__(self, party: str, cause: str) -> None:
        super().__init__(f"party {party} failed: {cause}")
        self.party = party
        self.cause = cause


class LaunchTimeout(SecureMLError):
    """The whole run exceeded its time limit."""


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
}

#: exit code for an exception that is not a SecureMLError (a bug, or Ctrl-C)
UNEXPECTED_EXIT_CODE = 70
INTERRUPTED_EXIT_CODE = 130


def exit_code_for(error: BaseException) -> int:
    """The exit code of ``error``: its own class's, else its nearest ancestor's."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED_EXIT_CODE
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return UNEXPECTED_EXIT_CODE
