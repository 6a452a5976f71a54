"""The section registry: a family's own section goes through the one validator."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import secure_ml.sections as sections
from secure_ml.errors import SpecError
from secure_ml.protocols import load_sections
from secure_ml.sections import BOOL, NUMBER, Key, Section, positive, register_section
from secure_ml.spec import spec_from_dict


@dataclass(frozen=True)
class FedSpec:
    rounds: int = 3
    fraction: float = 1.0
    secure: bool = True
    client_data: str | None = None


def fed_section(**changes) -> Section:
    fields = {
        "name": "fed",
        "cls": FedSpec,
        "keys": {
            "rounds": Key((int,), sections.at_least_one),
            "fraction": Key(NUMBER, positive),
            "secure": BOOL,
            "client_data": Key((str,), hash_as=lambda _: "party-local"),
        },
        "owner": "tests.fed",
        **changes,
    }
    return Section(**fields)


@pytest.fixture
def fed(monkeypatch):
    """[fed] registered for one test only (the registry is restored after)."""
    load_sections()  # the families' sections first: their modules register once
    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))
    return register_section(fed_section())


def raw(**extra):
    return {
        "protocol": {"name": "python"},
        "party": [{"name": "a", "roles": ["receiver"]}],
        **extra,
    }


def test_a_registered_section_is_validated_read_and_hashed(fed):
    spec = spec_from_dict(raw(fed={"rounds": 5, "fraction": 1, "client_data": "/a/b"}))
    assert spec.fed == FedSpec(rounds=5, fraction=1.0, client_data="/a/b")
    assert spec_from_dict(raw()).fed == FedSpec()
    assert spec.to_dict()["fed"] == {"rounds": 5, "fraction": 1.0, "secure": True,
                                     "client_data": "/a/b"}  # fmt: skip
    elsewhere = spec_from_dict(raw(fed={"rounds": 5, "client_data": "/c"}))
    assert elsewhere.hash == spec.hash  # client_data is party-local
    assert spec_from_dict(raw(fed={"rounds": 6})).hash != spec.hash
    with pytest.raises(SpecError, match=r"\[fed\]: rounds = 0: must be an integer >= 1"):
        spec_from_dict(raw(fed={"rounds": 0}))
    with pytest.raises(SpecError, match=r"\[fed\]: unknown key 'round'; allowed keys: rounds"):
        spec_from_dict(raw(fed={"round": 1}))
    with pytest.raises(SpecError, match=r"\[fed\]: secure = 1: expected bool"):
        spec_from_dict(raw(fed={"secure": 1}))


def test_unregistered_sections_stay_unknown():
    with pytest.raises(SpecError, match=r"\[fed\]: unknown section; allowed sections: protocol"):
        spec_from_dict(raw(fed={}))


def test_a_section_check_sees_the_whole_spec(fed, monkeypatch):
    def check(spec, fail):
        if spec.fed.secure and spec.protocol.dealer == "tfp":
            raise fail("[fed]", "secure = true needs dealer = 'ttp'")

    register_section(fed_section(check=check))
    tfp = {"name": "python", "dealer": "tfp", "insecure_dealer": True}
    with pytest.raises(SpecError, match=r"<dict>: \[fed\]: secure = true needs dealer = 'ttp'"):
        spec_from_dict(raw(protocol=tfp))


def test_registration_refuses_mismatched_fields_and_a_second_owner(fed):
    with pytest.raises(TypeError, match="differ from FedSpec's fields"):
        register_section(fed_section(keys={"rounds": BOOL}))
    with pytest.raises(TypeError, match="required keys"):
        register_section(fed_section(required=("nope",)))
    with pytest.raises(ValueError, match=r"\[fed\] is registered by tests.fed"):
        register_section(fed_section(owner="another.family"))
    with pytest.raises(ValueError, match=r"\[train\] is registered by secure_ml.protocols"):
        register_section(fed_section(name="train"))


def test_an_omit_default_section_is_left_out_at_its_defaults(fed):
    register_section(fed_section(omit_default=True))
    assert "fed" not in spec_from_dict(raw()).to_dict()
    assert spec_from_dict(raw(fed={"rounds": 3})).hash == spec_from_dict(raw()).hash
    assert spec_from_dict(raw(fed={"rounds": 4})).to_dict()["fed"]["rounds"] == 4
