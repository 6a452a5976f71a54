"""Versions of everything that shapes a result (written into result.json)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {
        "secure_ml": _version("secure-ml"),
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "crypten": _version("crypten"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
    }
