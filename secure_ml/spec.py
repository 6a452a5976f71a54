"""Specs: a TOML file that says who holds what and who may learn what.

``load_spec(path)`` parses and validates a spec into frozen dataclasses. Every
error names the key, the value found and what is allowed; unknown keys are
errors. ``protocols/README.md`` is the reference for every section and key.

The spec hash (``Spec.hash``) is what parties compare at start-up. It leaves out
party-local values (file paths, the ``[launch]`` section) so that parties on
different hosts, with different local paths, agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from secure_ml.errors import SpecError, UnsafeConfigurationError
from secure_ml.parties import DEALER_NAME, DEALER_ROLE, ROLES, Party, Roster

DEALERS = ("ttp", "tfp")
PARTITIONS = ("vertical", "horizontal", "dirichlet")
DATA_SCHEMES = ("csv",)
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


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.5
    momentum: float = 0.0
    keep_shared: bool = False


@dataclass(frozen=True)
class InferSpec:
    batch_size: int = 64


@dataclass(frozen=True)
class DPSpec:
    epsilon: float
    delta: float
    max_grad_norm: float = 1.0


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
class Spec:
    """A validated spec. Paths inside it are absolute (resolved at load time)."""

    protocol: ProtocolSpec
    parties: tuple[PartySpec, ...]
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    infer: InferSpec = field(default_factory=InferSpec)
    dp: DPSpec | None = None
    mpc: MPCSpec = field(default_factory=MPCSpec)
    launch: LaunchSpec = field(default_factory=LaunchSpec)
    source: str = "<dict>"

    @property
    def roster(self) -> Roster:
        compute = tuple(
            Party(name=p.name, rank=i, roles=p.roles) for i, p in enumerate(self.parties)
        )
        dealer = None
        if self.protocol.dealer == "ttp":
            dealer = Party(name=DEALER_NAME, rank=len(compute), roles=(DEALER_ROLE,))
        return Roster(parties=compute, dealer=dealer)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (TOML-shaped; ``party`` is a list)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            key = "party" if f.name == "parties" else f.name
            if value is None:
                continue
            if key == "party":
                out[key] = [_drop_none(asdict(p)) for p in value]
            else:
                out[key] = _drop_none(asdict(value))
        return out

    @property
    def hash(self) -> str:
        """SHA-256 over the spec without party-local values (paths, [launch])."""
        shared = self.to_dict()
        shared.pop("launch", None)
        for party in shared["party"]:
            if "data" in party:
                party["data"] = party["data"].split(":", 1)[0]
        source = shared.get("data", {}).get("source")
        if source and source.startswith("torchvision:"):
            shared["data"]["source"] = ":".join(source.split(":")[:2])
        model = shared["model"]
        model["kind"] = (
            model["kind"].split(":", 1)[0] if _local_kind(model["kind"]) else model["kind"]
        )
        if "weights" in model:
            model["weights"] = "party-local"
        canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(canonical.encode()).hexdigest()


#: model kinds whose text after the colon is a party-local path
LOCAL_MODEL_KINDS = ("checkpoint", "shares")


def _local_kind(kind: str) -> bool:
    return kind.split(":", 1)[0] in LOCAL_MODEL_KINDS and ":" in kind


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}


# -------------------------------------------------------------- validation --

Check = Callable[[Any], str | None]  # returns what is allowed, or None when fine

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


def _one_of(options: Sequence[str]) -> Check:
    def check(v: Any) -> str | None:
        return None if v in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 else "a number > 0"


def _at_least_one(v: Any) -> str | None:
    return None if v >= 1 else "an integer >= 1"


def _fraction(v: Any) -> str | None:
    return None if 0 < v < 1 else "a number strictly between 0 and 1"


def _probability(v: Any) -> str | None:
    return None if 0 < v < 1 else "a probability strictly between 0 and 1 (e.g. 1e-5)"


def _non_negative_int(v: Any) -> str | None:
    return None if v >= 0 else "an integer >= 0"


def _party_name(v: Any) -> str | None:
    if v == DEALER_NAME:
        return f"a name other than {DEALER_NAME!r} (reserved for the trusted third party)"
    if _NAME_RE.match(v):
        return None
    return "a name of letters, digits, '_' or '-', starting with a letter (at most 64)"


def _layer_sizes(v: Any) -> str | None:
    ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)
    return None if ok else "a list of layer widths, each an integer >= 1 (e.g. [64, 32])"


def _momentum(v: Any) -> str | None:
    return None if 0 <= v < 1 else "a number in [0, 1)"


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


# Each key: (python type(s), check or None). Types are checked before checks.
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Check | None]]] = {
    "protocol": {
        "name": ((str,), None),  # checked against the registry in _validate_protocol
        "dealer": ((str,), _one_of(DEALERS)),
        "insecure_dealer": ((bool,), None),
        "seed": ((int,), _non_negative_int),
    },
    "party": {
        "name": ((str,), _party_name),
        "roles": ((list,), _roles),
        "data": ((str,), _data_ref),
        "label_column": ((str,), None),
    },
    "data": {
        "source": ((str,), None),
        "partition": ((str,), _one_of(PARTITIONS)),
        "id_column": ((str,), None),
        "test_fraction": ((float, int), _fraction),
        "alpha": ((float, int), _positive),
    },
    "model": {
        "kind": ((str,), None),
        "hidden": ((list,), _layer_sizes),
        "channels": ((int,), _at_least_one),
        "weights": ((str,), None),
        "num_classes": ((int,), _at_least_one),
    },
    "train": {
        "epochs": ((int,), _at_least_one),
        "batch_size": ((int,), _at_least_one),
        "lr": ((float, int), _positive),
        "momentum": ((float, int), _momentum),
        "keep_shared": ((bool,), None),
    },
    "infer": {"batch_size": ((int,), _at_least_one)},
    "dp": {
        "epsilon": ((float, int), _positive),
        "delta": ((float, int), _probability),
        "max_grad_norm": ((float, int), _positive),
    },
    "mpc": {
        "p2p_open": ((bool,), None),
        "batch_openings": ((bool,), None),
        "precompute": ((bool,), None),
        "precompute_mb": ((int,), _at_least_one),
        "fast_config": ((bool,), None),
        "exact_truncation": ((bool,), None),
    },
    "launch": {
        "timeout": ((float, int), _positive),
        "collective_timeout": ((float, int), _positive),
        "heartbeat_timeout": ((float, int), _positive),
        "threads": ((int,), _at_least_one),
    },
}
_REQUIRED = {"protocol": ("name",), "party": ("name", "roles"), "dp": ("epsilon", "delta")}
_SECTION_CLASS = {
    "protocol": ProtocolSpec,
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "infer": InferSpec,
    "dp": DPSpec,
    "mpc": MPCSpec,
    "launch": LaunchSpec,
}


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {where}: {message}")

    def table(self, section: str, raw: Any, where: str) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            kind = "[[party]] tables" if section == "party" else f"a [{section}] table"
            raise self.fail(where, f"expected {kind}, got {type(raw).__name__}")
        schema = _SCHEMA[section]
        unknown = sorted(set(raw) - set(schema))
        if unknown:
            allowed = ", ".join(schema)
            raise self.fail(where, f"unknown key {shown(unknown[0])}; allowed keys: {allowed}")
        for key in _REQUIRED.get(section, ()):
            if key not in raw:
                raise self.fail(where, f"missing required key {key!r}")
        return {key: self.value(section, key, raw[key], where) for key in raw}

    def value(self, section: str, key: str, value: Any, where: str) -> Any:
        types, check = _SCHEMA[section][key]
        ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok_type:
            expected = " or ".join(t.__name__ for t in types)
            raise self.fail(where, f"{key} = {shown(value)}: expected {expected}")
        if key == "roles" and not all(isinstance(r, str) for r in value):
            raise self.fail(where, f"{key} = {shown(value)}: roles are strings")
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
    allowed = ("protocol", "party", *[s for s in _SCHEMA if s not in ("protocol", "party")])
    for section in raw:
        if section not in allowed:
            where = f"[{section}]" if len(section) <= SHOWN_CHARS else f"[{shown(section)}]"
            raise v.fail(where, f"unknown section; allowed sections: {', '.join(allowed)}")
    if "protocol" not in raw:
        raise v.fail("[protocol]", "missing section (it needs at least name = '...')")
    raw_parties = raw.get("party")
    if not isinstance(raw_parties, list) or not raw_parties:
        raise v.fail("[[party]]", "at least one [[party]] table is required")

    sections: dict[str, Any] = {}
    for name, cls in _SECTION_CLASS.items():
        if name in raw:
            sections[name] = cls(**v.table(name, raw[name], f"[{name}]"))
    parties = tuple(_party(v, p, i, base_dir) for i, p in enumerate(raw_parties))
    if base_dir is not None and "model" in sections:
        sections["model"] = _resolve_model_paths(sections["model"], base_dir)
    if base_dir is not None and "data" in sections:
        sections["data"] = _resolve_source_root(sections["data"], base_dir)
    spec = Spec(parties=parties, source=source, **sections)
    _cross_checks(v, spec)
    return spec


def _party(v: _Validator, raw: Any, index: int, base_dir: Path | None) -> PartySpec:
    values = v.table("party", raw, f"[[party]] #{index + 1}")
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
    names = [p.name for p in spec.parties]
    for name in names:
        if names.count(name) > 1:
            raise v.fail("[[party]]", f"name = {shown(name)} is used twice; party names are unique")
    if spec.protocol.dealer == "tfp" and not spec.protocol.insecure_dealer:
        raise UnsafeConfigurationError(
            f"{v.source}: [protocol]: dealer = 'tfp' lets party 0 generate every Beaver "
            "triple and so decrypt everything; use dealer = 'ttp' (default), or also set "
            "insecure_dealer = true if party 0 may see all data"
        )
    for p in spec.parties:
        if p.label_column is not None and p.data is None:
            raise v.fail(
                f"[[party]] {p.name}", "label_column is set but the party has no data = 'csv:...'"
            )
    from secure_ml.protocols import check_spec

    check_spec(spec, fail=lambda where, msg: v.fail(where, msg))


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
