"""Spec errors cut long values: a pasted blob must not fill the terminal."""

from __future__ import annotations

import pytest

from secure_ml.errors import SpecError
from secure_ml.spec import SHOWN_CHARS, apply_overrides, shown, spec_from_dict

BLOB = "x" * 5000


def spec_with(**sections):
    spec = {"protocol": {"name": "python"}, "party": [{"name": "a", "roles": ["data_owner"]}]}
    spec.update(sections)
    return spec


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (spec_with(protocol={"name": "python", "dealer": BLOB}), "dealer = 'xxx"),
        (spec_with(protocol={"name": BLOB}), "name = 'xxx"),
        (spec_with(train={"lr": BLOB}), "lr = 'xxx"),
        (spec_with(train={BLOB: 1}), "unknown key 'xxx"),
        (spec_with(**{BLOB: {}}), "['xxx"),
        (spec_with(party=[{"name": BLOB, "roles": ["data_owner"]}]), "name = 'xxx"),
        (spec_with(model={"hidden": list(range(3000))}), "[0, 1, 2"),
    ],
)
def test_long_values_are_cut_and_their_size_said(raw, where):
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    message = str(info.value)
    assert where in message
    assert len(message) < 400, message
    assert "(5,000 characters)" in message or "(3,000 items)" in message


def test_long_set_assignments_are_cut():
    with pytest.raises(SpecError) as info:
        apply_overrides({"party": []}, [f"party.{BLOB}.data=csv:a.csv"])
    assert len(str(info.value)) < 400 and "5,0" in str(info.value)


def test_short_values_are_shown_whole():
    assert shown("fast") == "'fast'"
    assert shown([1, 2]) == "[1, 2]"
    assert shown("y" * SHOWN_CHARS).startswith("'yyy") and "..." in shown("y" * SHOWN_CHARS)
    assert shown("y" * (SHOWN_CHARS - 2)) == repr("y" * (SHOWN_CHARS - 2))
