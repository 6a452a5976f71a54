"""CrypTen's configuration as plain attributes while a session runs.

CrypTen reads its configuration (``crypten.cfg``, an OmegaConf tree) on nearly
every operation: every attribute of a CrypTensor checks ``cfg.debug``, every
collective checks ``cfg.communicator.verbose``, every sigmoid enters several
``cfg.temp_override`` blocks, each an OmegaConf merge. One read costs ~20 µs;
measured here, a logistic-regression training step makes ~1,800 of them,
about a third of its time on two parties.

``fast_config`` snapshots the tree into plain read-only objects for the
session and serves every read (``cfg.a.b`` and ``cfg["a.b"]``) and every
``temp_override`` from the snapshot. Values are the same; only the lookup is
cheaper. A direct write (``cfg.a.b = v``) is refused while it is on, because
it would bypass the snapshot: use ``cfg.temp_override``, or switch
``[mpc] fast_config`` off.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_MISSING = object()


class ConfigNode:
    """One read-only level of the snapshot."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, _node(value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(
            f"CrypTen's configuration is read-only during a secure_ml session with "
            f"[mpc] fast_config = true (tried to set {name!r}); use cfg.temp_override(...) "
            "or set fast_config = false"
        )

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def overridden(self, path: list[str], value: Any) -> ConfigNode:
        """A copy with ``path`` set to ``value`` (unchanged branches are shared)."""
        values = dict(vars(self))
        head = path[0]
        if len(path) == 1:
            values[head] = value
        else:
            child = values.get(head)
            child = child if isinstance(child, ConfigNode) else ConfigNode({})
            values[head] = child.overridden(path[1:], value)
        copy = ConfigNode({})
        vars(copy).update(values)
        return copy


def _node(value: Any) -> Any:
    return ConfigNode(value) if isinstance(value, Mapping) else value


def _fast_class(base: type) -> type:
    class FastCrypTenConfig(base):
        """CrypTen's config class, reading from ``_snapshot`` (a ConfigNode)."""

        def __getattribute__(self, name: str) -> Any:
            snapshot = object.__getattribute__(self, "__dict__").get("_snapshot")
            if snapshot is not None:
                found = _lookup(snapshot, name)
                if found is not _MISSING:
                    return found
            return base.__getattribute__(self, name)

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "_snapshot":
                object.__setattr__(self, name, value)
                return
            base.__setattr__(self, name, value)
            object.__setattr__(self, "_snapshot", _snapshot_of(self.config))

        @contextmanager
        def temp_override(self, override_dict: Mapping[str, Any]) -> Iterator[None]:
            before = object.__getattribute__(self, "_snapshot")
            snapshot = before
            for dotted, value in override_dict.items():
                snapshot = snapshot.overridden(dotted.split("."), value)
            object.__setattr__(self, "_snapshot", snapshot)
            try:
                yield
            finally:
                object.__setattr__(self, "_snapshot", before)

    return FastCrypTenConfig


def _lookup(snapshot: ConfigNode, name: str) -> Any:
    node: Any = snapshot
    for part in name.split("."):
        node = vars(node).get(part, _MISSING) if isinstance(node, ConfigNode) else _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _snapshot_of(config: Any) -> ConfigNode:
    from omegaconf import OmegaConf

    return ConfigNode(OmegaConf.to_container(config, resolve=True))


@contextmanager
def fast_config(cfg: Any, enabled: bool = True) -> Iterator[None]:
    """Serve ``cfg`` (CrypTen's config object) from a plain snapshot inside the block."""
    if not enabled:
        yield
        return
    original = type(cfg)
    cfg.__class__ = _fast_class(original)
    object.__setattr__(cfg, "_snapshot", _snapshot_of(cfg.config))
    try:
        yield
    finally:
        cfg.__class__ = original
        del cfg.__dict__["_snapshot"]
