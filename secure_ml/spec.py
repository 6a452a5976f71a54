"""Specs: a TOML file that says who holds what and who may learn what.

``load_spec(path)`` parses and validates a spec into frozen dataclasses. Every
error names the key, the value found and what is allowed; unknown keys and
sections are errors. ``protocols/README.md`` is the reference for every
section and key.

This module holds the common sections (``[protocol]``, ``[[party]]``,
``[data]``, ``[model]``, ``[mpc]``, ``[launch]``, ``[transport]``) and the one
validator. Each protocol family registers its own sections (``[train]``,
``[infer]``, ``[dp]``, ...) in the registry of ``secure_ml.sections``, from the
module ``secure_ml.protocols.FAMILIES`` names; a ``Spec`` reads them as
attributes (``spec.train``), with their defaults when absent.

The spec hash (``Spec.hash``) is what parties compare at start-up. It leaves out
party-local values (file paths, the ``[launch]`` section) so that parties on
different hosts, with different local paths, agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from secure_ml.errors import SpecError, UnsafeConfigurationError
from secure_ml.parties import (
    DEALER_NAME,
    DEALER_ROLE,
    FAILURES,
    OPTIONAL,
    REQUIRED,
    ROLES,
    Party,
    Roster,
)
from secure_ml.protocols import check_spec as check_protocol
from secure_ml.protocols import load_sections
from secure_ml.sections import (
    BOOL,
    NUMBER,
    SHOWN_CHARS,
    TEXT,
    Fail,
    Key,
    Section,
    at_least_one,
    fraction,
    get_section,
    non_negative_int,
    one_of,
    positive,
    register_section,
    registered,
    shown,
    unhashed,
)

#: ``dealer = "none"``: no dealer process, for runs without a CrypTen world
DEALERS = ("ttp", "tfp", "none")
PARTITIONS = ("vertical", "horizontal", "dirichlet")
DATA_SCHEMES = ("csv",)
#: ``[transport] codec``: how every message between parties is encoded.
#: plain: as is (trusted loopback); audit: plain, and every byte and message
#: per link is counted into the party's output
CODECS = ("plain", "audit")
#: ``[transport] encryption``: auto (on unless every process is on loopback),
#: on, or off (only with insecure_plaintext = true)
ENCRYPTION = ("auto", "on", "off")
#: ``[model] activation``: the hidden layers' nonlinearity (mlp, cnn). relu:
#: max(0, x); square: x * x, a polynomial that HE protocols can evaluate on
#: ciphertexts (and cheaper than ReLU on shares). Here, not in
#: ``secure_ml.models``, so that validating a spec never imports torch.
ACTIVATIONS = ("relu", "square")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


# ---------------------------------------------------------------- sections --


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    dealer: str = "ttp"
    insecure_dealer: bool = False
    seed: int = 0


@dataclass(frozen=True)
class PartySpec:
    name: str
    roles: tuple[str, ...]
    data: str | None = None
    label_column: str | None = None
    #: False: outside CrypTen's world (input-only or non-MPC; never imports crypten)
    crypten: bool = True
    #: "optional": the party's death does not fail the run (crypten = false only)
    failure: str = REQUIRED


@dataclass(frozen=True)
class DataSpec:
    source: str | None = None
    partition: str = "vertical"
    id_column: str | None = None
    test_fraction: float = 0.2
    alpha: float = 0.5


@dataclass(frozen=True)
class ModelSpec:
    kind: str = "logreg"
    hidden: tuple[int, ...] = (64,)
    channels: int = 8
    weights: str | None = None
    num_classes: int = 10
    activation: str = "relu"


@dataclass(frozen=True)
class MPCSpec:
    """How the parties run the MPC engine. Every optimisation is on by default;
    each can be switched off (benchmarks, debugging) without changing results
    beyond fixed-point noise. All parties must agree, so these enter the hash."""

    #: open shares with one point-to-point exchange instead of gloo's all_reduce
    p2p_open: bool = True
    #: open independent products together (autograd backward) and skip
    #: gradients nobody asked for (e.g. with respect to the input data)
    batch_openings: bool = True
    #: fetch the dealer's triples for many steps in one bulk request
    precompute: bool = True
    #: memory cap (MB, per party) for tuples fetched ahead of time
    precompute_mb: int = 256
    #: serve CrypTen's configuration reads from a plain snapshot (see sharing/fast_config)
    fast_config: bool = True
    #: correctness, not speed: truncate products exactly with the dealer's help
    #: (sharing/truncation); off, CrypTen's truncation fails now and then on large values
    exact_truncation: bool = True


@dataclass(frozen=True)
class LaunchSpec:
    timeout: float = 1800.0
    collective_timeout: float = 300.0
    heartbeat_timeout: float = 30.0
    threads: int = 1


@dataclass(frozen=True)
class TransportSpec:
    """How messages between parties are encoded and protected; all parties must agree.

    ``keys`` is party-local: the folder with this process's ``NAME.key`` and
    every process's ``NAME.pub`` (``secure-ml keys init``).
    """

    codec: str = "plain"
    encryption: str = "auto"
    insecure_plaintext: bool = False
    keys: str | None = None


#: the sections that are fields of ``Spec`` (``party`` as ``parties``); every
#: other registered section is a protocol family's, in ``Spec.sections``
COMMON_SECTIONS = ("protocol", "party", "data", "model", "mpc", "launch", "transport")


@dataclass(frozen=True)
class Spec:
    """A validated spec. Paths inside it are absolute (resolved at load time).

    The protocol families' sections are in ``sections`` and read as attributes:
    ``spec.train`` is ``sections["train"]``, or the section's defaults when the
    spec has none (None for an optional section such as ``[dp]``).
    """

    protocol: ProtocolSpec
    parties: tuple[PartySpec, ...]
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    mpc: MPCSpec = field(default_factory=MPCSpec)
    launch: LaunchSpec = field(default_factory=LaunchSpec)
    transport: TransportSpec = field(default_factory=TransportSpec)
    sections: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = "<dict>"

    def __getattr__(self, name: str) -> Any:
        # called only when no field matches: a family section, else the usual error
        section = None if name.startswith("__") or name == "sections" else _family(name)
        if section is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self.sections.get(name, section.default())

    @property
    def roster(self) -> Roster:
        """Ranks: CrypTen parties in [[party]] order, the dealer, then outside parties."""
        compute = [p for p in self.parties if p.crypten]
        outside = [p for p in self.parties if not p.crypten]
        parties = tuple(_as_party(p, rank) for rank, p in enumerate(compute))
        dealer = None
        if self.protocol.dealer == "ttp":
            dealer = Party(name=DEALER_NAME, rank=len(parties), roles=(DEALER_ROLE,))
        first = len(parties) + (dealer is not None)
        return Roster(
            parties=parties,
            dealer=dealer,
            outside=tuple(_as_party(p, first + i) for i, p in enumerate(outside)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (TOML-shaped; ``party`` is a list)."""
        out: dict[str, Any] = {}
        for section in _registry():
            value = self.parties if section.name == "party" else getattr(self, section.name)
            if value is None:
                continue
            if section.many:
                out[section.name] = [section.plain(item) for item in value]
                continue
            table = section.plain(value)
            if section.omit_default and table == section.default_table():
                continue
            out[section.name] = table
        return out

    @property
    def hash(self) -> str:
        """SHA-256 over the spec without party-local values (paths, [launch])."""
        shared: dict[str, Any] = {}
        for name, table in self.to_dict().items():
            section = get_section(name)
            if section is None or not section.hashed:
                continue
            if section.many:
                shared[name] = [section.hashed_form(item) for item in table]
                continue
            form = section.hashed_form(table)
            # a table that differs from its default only in unhashed keys hashes as absent
            if not (section.omit_default and form == section.hashed_form(section.default_table())):
                shared[name] = form
        canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _as_party(p: PartySpec, rank: int) -> Party:
    return Party(name=p.name, rank=rank, roles=p.roles, crypten=p.crypten, failure=p.failure)


def _registry() -> tuple[Section, ...]:
    """Every section: the common ones, then the families' (loaded on first use)."""
    load_sections()
    return registered()


def _family(name: str) -> Section | None:
    load_sections()
    return None if name in COMMON_SECTIONS else get_section(name)


#: model kinds whose text after the colon is a party-local path
LOCAL_MODEL_KINDS = ("checkpoint", "shares")


def _local_kind(kind: str) -> bool:
    return kind.split(":", 1)[0] in LOCAL_MODEL_KINDS and ":" in kind


# ------------------------------------------------------ keys of the common --


_NAME_RULE = "a name of letters, digits, '_' or '-', starting with a letter (at most 64)"


def _party_name(v: Any) -> str | None:
    if v == DEALER_NAME:
        return f"a name other than {DEALER_NAME!r} (reserved for the trusted third party)"
    if _NAME_RE.match(v):
        return None
    return _NAME_RULE


def check_party_name(name: str, *, where: str) -> None:
    """Refuse what cannot name a party or the dealer (names also name key files)."""
    if not _NAME_RE.match(name):
        raise SpecError(f"{where} {shown(name)}: must be {_NAME_RULE}")


def _layer_sizes(v: Any) -> str | None:
    ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)
    return None if ok else "a list of layer widths, each an integer >= 1 (e.g. [64, 32])"


def _roles(v: Any) -> str | None:
    bad = [r for r in v if r not in ROLES]
    if not v or bad or len(set(v)) != len(v):
        return "a non-empty list of distinct roles from " + ", ".join(ROLES)
    return None


def _data_ref(v: Any) -> str | None:
    scheme = v.split(":", 1)[0]
    if ":" in v and scheme in DATA_SCHEMES and v.split(":", 1)[1]:
        return None
    return "'csv:<path>' (a CSV file local to that party)"


def _scheme_only(ref: str) -> str:
    return ref.split(":", 1)[0]


def _shared_source(source: str) -> str:
    # a torchvision source's root is party-local: hash "torchvision:<name>"
    return ":".join(source.split(":")[:2]) if source.startswith("torchvision:") else source


def _shared_kind(kind: str) -> str:
    return kind.split(":", 1)[0] if _local_kind(kind) else kind


def _check_dealer(spec: Spec, fail: Fail) -> None:
    """The dealer fits the CrypTen world: none without one, a safe one with one."""
    dealer = spec.protocol.dealer
    in_world = [p.name for p in spec.parties if p.crypten]
    if not in_world and dealer != "none":
        raise fail(
            "[protocol]",
            f"dealer = {dealer!r}: no party is in CrypTen's world (every [[party]] has "
            "crypten = false): set dealer = 'none'",
        )
    if in_world and dealer == "none":
        raise fail(
            "[protocol]",
            "dealer = 'none' is only for runs without a CrypTen world, and "
            f"{', '.join(in_world)} {'is' if len(in_world) == 1 else 'are'} in it "
            "(crypten = true): use dealer = 'ttp' (the default)",
        )
    if dealer == "tfp" and not spec.protocol.insecure_dealer:
        raise UnsafeConfigurationError(
            f"{spec.source}: [protocol]: dealer = 'tfp' lets party 0 generate every Beaver "
            "triple and so decrypt everything; use dealer = 'ttp' (default), or also set "
            "insecure_dealer = true if party 0 may see all data"
        )


def _check_transport(spec: Spec, fail: Fail) -> None:
    """Encryption goes off only when the spec says it knows the risk."""
    transport = spec.transport
    if transport.encryption == "off" and not transport.insecure_plaintext:
        raise UnsafeConfigurationError(
            f"{spec.source}: [transport]: encryption = 'off' sends every share, key and "
            "message in the clear when parties are on different machines; use "
            "encryption = 'auto' (default), or also set insecure_plaintext = true"
        )
    if transport.insecure_plaintext and transport.encryption != "off":
        raise fail(
            "[transport]",
            "insecure_plaintext = true goes only with encryption = 'off' (it is the "
            "acknowledgement that turns encryption off)",
        )


def _check_parties(spec: Spec, fail: Fail) -> None:
    names = [p.name for p in spec.parties]
    for name in names:
        if names.count(name) > 1:
            raise fail("[[party]]", f"name = {shown(name)} is used twice; party names are unique")
    for p in spec.parties:
        if p.label_column is not None and p.data is None:
            raise fail(
                f"[[party]] {p.name}", "label_column is set but the party has no data = 'csv:...'"
            )
        if p.failure == OPTIONAL and p.crypten:
            raise fail(
                f"[[party]] {p.name}",
                "failure = 'optional' needs crypten = false: a CrypTen compute party's death "
                "breaks the others' collectives; set crypten = false (a party outside "
                "CrypTen's world) or failure = 'required'",
            )


_OWNER = __name__
register_section(
    Section(
        name="protocol",
        cls=ProtocolSpec,
        keys={
            "name": TEXT,  # checked against the protocol registry in check_protocol
            "dealer": Key((str,), one_of(DEALERS)),
            "insecure_dealer": BOOL,
            "seed": Key((int,), non_negative_int),
        },
        required=("name",),
        check=_check_dealer,
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="party",
        cls=PartySpec,
        keys={
            "name": Key((str,), _party_name),
            "roles": Key((list,), _roles, items=str),
            "data": Key((str,), _data_ref, hash_as=_scheme_only),
            "label_column": TEXT,
            "crypten": Key((bool,), omit_default=True),
            "failure": Key((str,), one_of(FAILURES), omit_default=True),
        },
        required=("name", "roles"),
        check=_check_parties,
        many=True,
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="data",
        cls=DataSpec,
        keys={
            "source": Key((str,), hash_as=_shared_source),
            "partition": Key((str,), one_of(PARTITIONS)),
            "id_column": TEXT,
            "test_fraction": Key(NUMBER, fraction),
            "alpha": Key(NUMBER, positive),
        },
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="model",
        cls=ModelSpec,
        keys={
            "kind": Key((str,), hash_as=_shared_kind),
            "hidden": Key((list,), _layer_sizes),
            "channels": Key((int,), at_least_one),
            "weights": Key((str,), hash_as=lambda _: "party-local"),
            "num_classes": Key((int,), at_least_one),
            # omitted at its default: specs from before the key keep their hash
            "activation": Key((str,), one_of(ACTIVATIONS), omit_default=True),
        },
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="mpc",
        cls=MPCSpec,
        keys={
            "p2p_open": BOOL,
            "batch_openings": BOOL,
            "precompute": BOOL,
            "precompute_mb": Key((int,), at_least_one),
            "fast_config": BOOL,
            "exact_truncation": BOOL,
        },
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="launch",
        cls=LaunchSpec,
        keys={
            "timeout": Key(NUMBER, positive),
            "collective_timeout": Key(NUMBER, positive),
            "heartbeat_timeout": Key(NUMBER, positive),
            "threads": Key((int,), at_least_one),
        },
        hashed=False,
        owner=_OWNER,
    )
)
register_section(
    Section(
        name="transport",
        cls=TransportSpec,
        keys={
            "codec": Key((str,), one_of(CODECS)),
            "encryption": Key((str,), one_of(ENCRYPTION), omit_default=True),
            "insecure_plaintext": Key((bool,), omit_default=True),
            "keys": Key((str,), hash_as=unhashed),
        },
        check=_check_transport,
        omit_default=True,  # specs from before [transport] keep their hash
        owner=_OWNER,
    )
)


# -------------------------------------------------------------- validation --


_PLURALS = {str: "strings", int: "integers", bool: "booleans"}


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {where}: {message}")

    def table(self, section: Section, raw: Any, where: str) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            kind = f"[[{section.name}]] tables" if section.many else f"a [{section.name}] table"
            raise self.fail(where, f"expected {kind}, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(section.keys))
        if unknown:
            allowed = ", ".join(section.keys)
            raise self.fail(where, f"unknown key {shown(unknown[0])}; allowed keys: {allowed}")
        for key in section.required:
            if key not in raw:
                raise self.fail(where, f"missing required key {key!r}")
        return {key: self.value(section.keys[key], key, raw[key], where) for key in raw}

    def value(self, spec_key: Key, key: str, value: Any, where: str) -> Any:
        types, check = spec_key.types, spec_key.check
        ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok_type:
            expected = " or ".join(t.__name__ for t in types)
            raise self.fail(where, f"{key} = {shown(value)}: expected {expected}")
        items = spec_key.items
        if items is not None and not all(isinstance(item, items) for item in value):
            kind = _PLURALS.get(items, f"{items.__name__} values")
            raise self.fail(where, f"{key} = {shown(value)}: {key} are {kind}")
        allowed = check(value) if check else None
        if allowed is not None:
            raise self.fail(where, f"{key} = {shown(value)}: must be {allowed}")
        if float in types and isinstance(value, int):
            value = float(value)
        return tuple(value) if isinstance(value, list) else value


def spec_from_dict(
    raw: Mapping[str, Any], *, source: str = "<dict>", base_dir: Path | None = None
) -> Spec:
    """Validate a TOML-shaped mapping into a ``Spec``.

    Relative party data paths are resolved against ``base_dir`` (the spec file's
    folder); they are party-local, so they do not enter the spec hash.
    """
    v = _Validator(source)
    if not isinstance(raw, Mapping):
        raise v.fail("spec", "expected a table of sections")
    sections = _registry()
    allowed = [s.name for s in sections]
    for name in raw:
        if name not in allowed:
            where = f"[{name}]" if len(name) <= SHOWN_CHARS else f"[{shown(name)}]"
            raise v.fail(where, f"unknown section; allowed sections: {', '.join(allowed)}")
    if "protocol" not in raw:
        raise v.fail("[protocol]", "missing section (it needs at least name = '...')")
    raw_parties = raw.get("party")
    if not isinstance(raw_parties, list) or not raw_parties:
        raise v.fail("[[party]]", "at least one [[party]] table is required")

    common: dict[str, Any] = {}
    family: dict[str, Any] = {}
    for section in sections:
        if section.many:
            continue
        if section.name in raw:
            value = section.cls(**v.table(section, raw[section.name], f"[{section.name}]"))
        elif section.name in COMMON_SECTIONS:
            continue
        else:
            value = section.default()
        target = common if section.name in COMMON_SECTIONS else family
        if value is not None:
            target[section.name] = value
    parties = tuple(_party(v, p, i, base_dir) for i, p in enumerate(raw_parties))
    if base_dir is not None and "model" in common:
        common["model"] = _resolve_model_paths(common["model"], base_dir)
    if base_dir is not None and "data" in common:
        common["data"] = _resolve_source_root(common["data"], base_dir)
    transport = common.get("transport")
    if base_dir is not None and transport is not None and transport.keys is not None:
        common["transport"] = replace(transport, keys=_resolve(base_dir, transport.keys))
    dp = family.get("dp")
    if base_dir is not None and dp is not None and dp.ledger is not None:
        family["dp"] = replace(dp, ledger=_resolve(base_dir, dp.ledger))
    spec = Spec(parties=parties, source=source, sections=family, **common)
    _cross_checks(v, spec)
    return spec


def _party(v: _Validator, raw: Any, index: int, base_dir: Path | None) -> PartySpec:
    values = v.table(get_section("party"), raw, f"[[party]] #{index + 1}")
    data = values.get("data")
    if data is not None and base_dir is not None:
        scheme, path = data.split(":", 1)
        values["data"] = f"{scheme}:{(base_dir / path).resolve()}"
    return PartySpec(**values)


def _resolve_model_paths(model: ModelSpec, base_dir: Path) -> ModelSpec:
    kind, weights = model.kind, model.weights
    if _local_kind(kind):
        scheme, path = kind.split(":", 1)
        kind = f"{scheme}:{_resolve(base_dir, path)}"
    if weights is not None:
        weights = _resolve(base_dir, weights)
    return replace(model, kind=kind, weights=weights)


def _resolve_source_root(data: DataSpec, base_dir: Path) -> DataSpec:
    source = data.source or ""
    if source.startswith("torchvision:") and source.count(":") >= 2:
        scheme, name, root = source.split(":", 2)
        return replace(data, source=f"{scheme}:{name}:{_resolve(base_dir, root)}")
    return data


def _resolve(base_dir: Path, path: str) -> str:
    # keep a {party} placeholder (one file per party) intact
    return str(base_dir / path) if not Path(path).is_absolute() else path


def _cross_checks(v: _Validator, spec: Spec) -> None:
    """Every section's own check (common ones first), then the protocol's."""

    def fail(where: str, message: str) -> SpecError:
        return v.fail(where, message)

    for section in _registry():
        if section.check is not None:
            section.check(spec, fail)
    check_protocol(spec, fail)


# ---------------------------------------------------------------- loading --


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` (value as a TOML literal, else a bare string)."""
    if "=" not in assignment:
        raise SpecError(f"--set {shown(assignment)}: expected key.path=value, e.g. train.epochs=3")
    key, text = assignment.split("=", 1)
    path = [k for k in key.strip().split(".") if k]
    if not path:
        raise SpecError(f"--set {shown(assignment)}: the key before '=' is empty")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return path, value


def apply_overrides(raw: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` assignments; ``party.<name or index>.key`` addresses a party."""
    for assignment in assignments:
        path, value = parse_override(assignment)
        if path[0] == "party":
            if len(path) != 3:
                raise SpecError(f"--set {shown(assignment)}: use party.<name or index>.<key>=value")
            target = _find_party(raw, path[1], assignment)
        else:
            target = raw
            for key in path[:-1]:
                target = target.setdefault(key, {})
                if not isinstance(target, dict):
                    raise SpecError(f"--set {shown(assignment)}: {shown(key)} is not a table")
        target[path[-1]] = value
    return raw


def _find_party(raw: dict[str, Any], selector: str, assignment: str) -> dict[str, Any]:
    parties = raw.get("party", [])
    for i, p in enumerate(parties):
        if p.get("name") == selector or str(i) == selector:
            return p
    names = ", ".join(str(p.get("name")) for p in parties)
    raise SpecError(f"--set {shown(assignment)}: no party {shown(selector)}; parties: {names}")


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML spec file into a raw mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{p}: not valid TOML: {e}") from None


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load, override (``--set``) and validate a spec file."""
    p = Path(path)
    raw = apply_overrides(read_spec_file(p), overrides)
    return spec_from_dict(raw, source=str(p), base_dir=p.resolve().parent)


def as_spec(spec: Spec | Mapping[str, Any] | str | Path) -> Spec:
    """Accept a Spec, a TOML-shaped mapping, or a path to a spec file."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return spec_from_dict(spec)
    return load_spec(spec)
