"""Each heavy dependency is imported only in its home (README "Layout", DESIGN 3).

``tenseal`` in ``secure_ml/sharing/he.py`` alone, ``opacus`` in ``release/``,
``crypten`` in the compat patch, sharing, transport and the protocols that
compute on CrypTen tensors (never in the HE protocol, whose processes must not
load it). Read from the source with ``ast``, function-level imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import secure_ml

PACKAGE = Path(secure_ml.__file__).parent

HOMES = {
    "tenseal": ("sharing/he.py",),
    "opacus": ("release/",),
    "crypten": ("compat/", "sharing/", "transport/", "protocols/"),
}
NEVER = {"crypten": ("protocols/he_infer.py", "protocols/he_section.py", "sharing/he.py",
                     "sharing/ckks_params.py", "models/")}  # fmt: skip


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_heavy_dependencies_are_imported_only_in_their_homes():
    misplaced = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for name in imported(path) & set(HOMES):
            home = where.startswith(HOMES[name])
            if not home or where.startswith(NEVER.get(name, ())):
                misplaced.append(f"{where} imports {name}")
    assert misplaced == []
    assert "tenseal" in imported(PACKAGE / "sharing" / "he.py")
