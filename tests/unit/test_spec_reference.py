"""protocols/README.md documents every registered spec section and key."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from testkit import REPO

import secure_ml.spec  # noqa: F401  (registers the common sections)
from secure_ml.protocols import load_sections
from secure_ml.sections import BOOL, Section, reference_gaps, registered

REFERENCE = (REPO / "protocols" / "README.md").read_text()


def all_sections() -> tuple[Section, ...]:
    load_sections()
    return registered()


def test_every_registered_section_and_key_is_in_the_reference():
    names = [s.name for s in all_sections()]
    assert {"protocol", "party", "transport", "train", "infer", "dp"} <= set(names)
    assert reference_gaps(REFERENCE, all_sections()) == []


def test_a_key_missing_from_the_reference_is_a_gap():
    row = next(line for line in REFERENCE.splitlines() if line.startswith("| `keep_shared` |"))
    assert reference_gaps(REFERENCE.replace(row + "\n", ""), all_sections()) == [
        "[train] keep_shared: no table row"
    ]


def test_a_row_in_another_section_does_not_count():
    # `batch_size` is in [train] and [infer]: each section needs its own row
    infer_part = REFERENCE.split("## `[infer]`")[1].split("\n## ")[0]
    row = next(line for line in infer_part.splitlines() if line.startswith("| `batch_size` |"))
    text = REFERENCE.replace(infer_part, infer_part.replace(row + "\n", ""))
    assert reference_gaps(text, all_sections()) == ["[infer] batch_size: no table row"]


@dataclass(frozen=True)
class _FakeSpec:
    fancy: bool = False


def test_an_undocumented_section_and_a_stale_row_are_gaps():
    fake = Section(name="fake", cls=_FakeSpec, keys={"fancy": BOOL}, owner=__name__)
    assert reference_gaps(REFERENCE, [*all_sections(), fake]) == [
        "[fake]: no '## `[fake]`' heading"
    ]
    documented = REFERENCE + "\n## `[fake]`\n\n| key |\n|---|\n| `fancy` |\n| `gone` |\n"
    assert reference_gaps(documented, [fake]) == ["[fake] gone: documented, not registered"]
    assert reference_gaps(documented.replace("| `fancy` |", "| `fanzy` |"), [fake]) == [
        "[fake] fancy: no table row",
        "[fake] fanzy: documented, not registered",
        "[fake] gone: documented, not registered",
    ]


def test_loading_every_section_imports_neither_torch_nor_crypten():
    code = (
        "import sys, secure_ml.spec\n"
        "from secure_ml.protocols import load_sections\n"
        "load_sections()\n"
        "print(sorted({'torch', 'crypten'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
