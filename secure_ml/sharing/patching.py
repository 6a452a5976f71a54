"""Attributes of CrypTen's modules and classes replaced for one block only.

The session-scoped engine changes (mask streams, exact truncation) swap
functions and methods inside CrypTen while a ``Session`` runs and must leave
CrypTen as they found it, so that nothing global outlives the session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_MISSING = object()


@contextmanager
def patched(patches: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``owner.name = value`` for each patch inside the block; restore after.

    An attribute the owner did not define itself is deleted again on exit, so
    an inherited one shows through as before.
    """
    saved = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
