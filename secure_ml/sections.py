"""The registry of spec sections: each section's keys, checks and hash rules.

``secure_ml.spec`` registers the common sections (``[protocol]``,
``[[party]]``, ``[data]``, ``[model]``, ``[mpc]``, ``[launch]``,
``[transport]``); each protocol family registers its own next to its protocols
(``secure_ml.protocols.FAMILIES`` says which module), so that a new family adds
a section without editing ``spec.py``. The one validator in ``spec.py`` reads
only this registry.

This module imports nothing heavy (no torch, no crypten): ``secure-ml spec
check`` loads every section module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from typing import Any

from secure_ml.errors import SpecError

#: a key's check: returns what is allowed, or None when the value is fine
Check = Callable[[Any], str | None]
#: ``fail(where, message)`` builds the SpecError to raise (it adds the file name)
Fail = Callable[[str, str], SpecError]
#: a whole-section check, run on the validated spec: ``check(spec, fail)``
SectionCheck = Callable[[Any, Fail], None]


@dataclass(frozen=True)
class Key:
    """One key of a section."""

    #: accepted Python types (TOML's); ``bool`` is never taken for ``int``
    types: tuple[type, ...]
    check: Check | None = None
    #: for a list: the type its items must have
    items: type | None = None
    #: a party-local value enters the spec hash through this (e.g. a path cut to its scheme)
    hash_as: Callable[[Any], Any] | None = None
    #: left out of ``to_dict`` (so of the hash) at its default: a key added after
    #: specs were hashed keeps their hash
    omit_default: bool = False


@dataclass(frozen=True)
class Section:
    """One spec section: ``[name]``, or ``[[name]]`` tables when ``many``."""

    name: str
    #: the frozen dataclass a table becomes; its fields are exactly the keys
    cls: type
    keys: Mapping[str, Key]
    required: tuple[str, ...] = ()
    check: SectionCheck | None = None
    #: False: party-local (like [launch]), left out of the spec hash
    hashed: bool = True
    #: True: an absent section reads as None (``spec.dp``); else as the defaults
    optional: bool = False
    #: left out of ``to_dict`` (so of the hash) when it equals its defaults:
    #: a section added after specs were hashed keeps their hash
    omit_default: bool = False
    many: bool = False
    #: the module that registered it (named when two modules claim one name)
    owner: str = ""

    def default(self) -> Any:
        """The value of an absent section."""
        return None if self.optional or self.many else self.cls()

    def default_table(self) -> dict[str, Any]:
        """The plain table of the section's defaults."""
        return self.plain(self.cls())

    def plain(self, value: Any) -> dict[str, Any]:
        """One table as TOML-shaped data: no None values, lists for tuples."""
        defaults = _defaults(self.cls)
        out = {}
        for key, item in asdict(value).items():
            if item is None or (self.keys[key].omit_default and item == defaults.get(key)):
                continue
            out[key] = list(item) if isinstance(item, tuple) else item
        return out

    def hashed_form(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """One plain table as it enters the spec hash (party-local values cut)."""
        out = dict(table)
        for key, item in table.items():
            hash_as = self.keys[key].hash_as
            if hash_as is unhashed:
                del out[key]
            elif hash_as is not None:
                out[key] = hash_as(item)
        return out


def unhashed(value: Any) -> None:
    """``hash_as`` for a party-local key that stays out of the hash entirely.

    (A key set on one host only, like a folder of key files, must not make
    the hashes differ.)
    """


_SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> Section:
    """Add ``section`` to the registry; its dataclass fields must be its keys.

    Registering a name again from the same module (a reload) replaces it; from
    another module it is an error: two families cannot share a section.
    """
    if not is_dataclass(section.cls) or not section.cls.__dataclass_params__.frozen:
        raise TypeError(f"[{section.name}]: {section.cls!r} is not a frozen dataclass")
    names = [f.name for f in fields(section.cls)]
    if names != list(section.keys):
        raise TypeError(
            f"[{section.name}]: keys {list(section.keys)} differ from "
            f"{section.cls.__name__}'s fields {names}"
        )
    missing = [k for k in section.required if k not in section.keys]
    if missing:
        raise TypeError(f"[{section.name}]: required keys {missing} are not keys")
    known = _SECTIONS.get(section.name)
    if known is not None and known.owner != section.owner:
        raise ValueError(
            f"[{section.name}] is registered by {known.owner}; {section.owner} cannot register it"
        )
    _SECTIONS[section.name] = section
    return section


def registered() -> tuple[Section, ...]:
    """Every registered section, in registration order (common ones first)."""
    return tuple(_SECTIONS.values())


def get_section(name: str) -> Section | None:
    return _SECTIONS.get(name)


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


# --------------------------------------------------------------- reference --

_HEADING = re.compile(r"^## `\[{1,2}([A-Za-z_][\w.]*)\]{1,2}`", re.MULTILINE)
_ROW_KEY = re.compile(r"^\| `([A-Za-z_]\w*)` \|", re.MULTILINE)


def reference_gaps(reference: str, sections: Iterable[Section]) -> list[str]:
    """What the spec reference (``protocols/README.md``) does not document.

    Each section needs a ``## `[name]``` heading and, in its part, one table
    row ``| `key` | ...`` per key; a row for a key no longer registered is a
    gap too (the reference would describe a key the validator refuses).
    """
    parts = {}
    headings = list(_HEADING.finditer(reference))
    for heading in headings:
        end = reference.find("\n## ", heading.end())
        parts[heading.group(1)] = reference[heading.end() : end if end >= 0 else None]
    gaps = []
    for section in sections:
        if section.name not in parts:
            gaps.append(f"[{section.name}]: no '## `[{section.name}]`' heading")
            continue
        rows = _ROW_KEY.findall(parts[section.name])
        gaps += [f"[{section.name}] {k}: no table row" for k in section.keys if k not in rows]
        gaps += [f"[{section.name}] {k}: documented, not registered" for k in rows
                 if k not in section.keys]  # fmt: skip
    return gaps


# ------------------------------------------------------ checks and messages --

#: a value echoed in an error is cut to this many characters: a pasted blob
#: must not fill the terminal, and the start is enough to recognise it
SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, cut after ``SHOWN_CHARS`` with its size."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    if isinstance(value, str):
        size = f"{len(value):,} characters"
    elif isinstance(value, list | tuple | dict):
        size = f"{len(value):,} items"
    else:
        size = f"{len(text):,} characters as text"
    return f"{text[:SHOWN_CHARS]}... ({size})"


def one_of(options: Sequence[str]) -> Check:
    def check(v: Any) -> str | None:
        return None if v in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def positive(v: Any) -> str | None:
    return None if v > 0 else "a number > 0"


def at_least_one(v: Any) -> str | None:
    return None if v >= 1 else "an integer >= 1"


def fraction(v: Any) -> str | None:
    return None if 0 < v < 1 else "a number strictly between 0 and 1"


def probability(v: Any) -> str | None:
    return None if 0 < v < 1 else "a probability strictly between 0 and 1 (e.g. 1e-5)"


def non_negative_int(v: Any) -> str | None:
    return None if v >= 0 else "an integer >= 0"


def unit_interval_open_right(v: Any) -> str | None:
    return None if 0 <= v < 1 else "a number in [0, 1)"


#: the usual key shapes
BOOL = Key((bool,))
TEXT = Key((str,))
NUMBER = (float, int)
