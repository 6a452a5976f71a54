"""Spec parsing: every error names the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from secure_ml.errors import SpecError, UnsafeConfigurationError, exit_code_for
from secure_ml.spec import apply_overrides, load_spec, spec_from_dict


def base(**sections):
    spec = {
        "protocol": {"name": "python"},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "receiver"]},
        ],
    }
    spec.update(sections)
    return spec


def test_defaults_and_roster_with_the_dealer_as_last_rank():
    spec = spec_from_dict(base())
    assert spec.protocol.dealer == "ttp" and spec.train.epochs == 5
    roster = spec.roster
    assert [p.rank for p in roster.processes] == [0, 1, 2]
    assert roster.dealer.name == "dealer" and roster.world_size == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"epochs": 0}}, r"\[train\]: epochs = 0: must be an integer >= 1"),
        ({"train": {"lr": "fast"}}, r"lr = 'fast': expected float or int"),
        ({"train": {"epoch": 3}}, r"unknown key 'epoch'; allowed keys: epochs, batch_size, lr"),
        ({"data": {"partition": "diagonal"}}, r"partition = 'diagonal': must be one of"),
        ({"data": {"test_fraction": 1.5}}, r"test_fraction = 1.5: must be a number strictly"),
        ({"dp": {"epsilon": 1.0}}, r"\[dp\]: missing required key 'delta'"),
        ({"protocol": {"name": "mpc.magic"}}, r"name = 'mpc.magic': must be one of"),
        ({"protocol": {"name": "python", "dealer": "tfp"}}, r"insecure_dealer = true"),
        ({"protocol": {"name": "python", "seed": True}}, r"seed = True: expected int"),
        ({"extras": {}}, r"\[extras\]: unknown section"),
        ({"mpc": {"p2p_open": "yes"}}, r"\[mpc\]: p2p_open = 'yes': expected bool"),
        ({"mpc": {"precompute_mb": 0}}, r"precompute_mb = 0: must be an integer >= 1"),
        ({"mpc": {"fast": True}}, r"unknown key 'fast'; allowed keys: p2p_open, batch_openings"),
    ],
)
def test_validation_errors_name_key_value_and_allowed(change, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(base(**change))


@pytest.mark.parametrize(
    ("party", "message"),
    [
        ({"name": "dealer", "roles": ["data_owner"]}, "reserved for the trusted third party"),
        ({"name": "c", "roles": ["owner"]}, r"roles = \['owner'\]: must be a non-empty list"),
        ({"name": "c", "roles": ["data_owner"], "data": "a.csv"}, r"'csv:<path>'"),
        ({"name": "a", "roles": ["data_owner"]}, "is used twice"),
        ({"name": "c"}, "missing required key 'roles'"),
    ],
)
def test_party_errors(party, message):
    spec = base()
    spec["party"].append(party)
    with pytest.raises(SpecError, match=message):
        spec_from_dict(spec)


def test_tfp_is_accepted_only_when_declared_insecure():
    with pytest.raises(UnsafeConfigurationError, match=r"\[protocol\]: dealer = 'tfp'") as refused:
        spec_from_dict(base(protocol={"name": "python", "dealer": "tfp"}))
    assert exit_code_for(refused.value) == 4  # the README's exit-code table
    spec = spec_from_dict(
        base(protocol={"name": "python", "dealer": "tfp", "insecure_dealer": True})
    )
    assert spec.roster.dealer is None


def test_hash_ignores_party_local_paths_and_launch_but_not_the_computation(tmp_path):
    one = base(launch={"timeout": 10})
    one["party"][0]["data"] = "csv:/hospital/a.csv"
    two = base(launch={"timeout": 99})
    two["party"][0]["data"] = "csv:/elsewhere/copy.csv"
    assert spec_from_dict(one).hash == spec_from_dict(two).hash
    three = base(train={"epochs": 6})
    three["party"][0]["data"] = "csv:/hospital/a.csv"
    assert spec_from_dict(three).hash != spec_from_dict(one).hash


def test_relative_data_paths_resolve_against_the_spec_folder(tmp_path):
    (tmp_path / "s.toml").write_text(
        '[protocol]\nname = "python"\n'
        '[[party]]\nname = "a"\nroles = ["data_owner"]\ndata = "csv:data/a.csv"\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    assert spec.parties[0].data == f"csv:{tmp_path / 'data' / 'a.csv'}"


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[protocol\nname=")
    with pytest.raises(SpecError, match=r"bad\.toml: not valid TOML"):
        load_spec(tmp_path / "bad.toml")


def test_overrides_parse_toml_values_and_address_parties():
    raw = apply_overrides(
        base(),
        ["train.epochs=3", "protocol.seed=7", "party.b.label_column=y", "data.source=sklearn:iris"],
    )
    assert raw["train"]["epochs"] == 3 and raw["protocol"]["seed"] == 7
    assert raw["party"][1]["label_column"] == "y"
    assert raw["data"]["source"] == "sklearn:iris"
    with pytest.raises(SpecError, match="no party 'zed'"):
        apply_overrides(base(), ["party.zed.roles=[]"])
    with pytest.raises(SpecError, match=r"expected key\.path=value"):
        apply_overrides(base(), ["train.epochs"])


def test_spec_round_trips_through_its_dict_form():
    spec = spec_from_dict(base(train={"epochs": 2}, dp={"epsilon": 1, "delta": 1e-5}))
    again = spec_from_dict(spec.to_dict())
    assert again == spec.__class__(**{**spec.__dict__, "source": again.source})


def test_mpc_optimisations_are_on_by_default_and_enter_the_hash():
    spec = spec_from_dict(base())
    mpc = spec.mpc
    assert mpc.p2p_open and mpc.batch_openings and mpc.precompute and mpc.fast_config
    assert mpc.precompute_mb == 256
    # parties must agree on how shares are opened and tuples fetched
    assert spec_from_dict(base(mpc={"precompute": False})).hash != spec.hash
    assert spec_from_dict(base(mpc={"precompute_mb": 64})).hash != spec.hash
