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
        ({"dp": {"epsilon": 1, "delta": 1e-5, "accountant": "moments"}}, r"must be one of 'rdp'"),
        ({"dp": {"epsilon": 1, "delta": 1e-5, "collusion_threshold": -1}}, r"an integer >= 0"),
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


def test_dp_ledger_is_party_local_and_resolves_against_the_spec_folder(tmp_path):
    (tmp_path / "s.toml").write_text(
        '[protocol]\nname = "python"\n[[party]]\nname = "a"\nroles = ["data_owner"]\n'
        '[dp]\nepsilon = 1.0\ndelta = 1e-5\nledger = "budgets/a.json"\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    assert spec.dp.ledger == str(tmp_path / "budgets" / "a.json")
    assert spec.dp.accountant == "rdp" and spec.dp.collusion_threshold is None
    elsewhere = spec_from_dict(base(dp={"epsilon": 1.0, "delta": 1e-5, "ledger": "/x/a.json"}))
    plain = spec_from_dict(base(dp={"epsilon": 1.0, "delta": 1e-5}))
    assert elsewhere.hash == plain.hash  # each owner's ledger path is its own business


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


# ------------------------------------------------ parties outside CrypTen --


def outside(name, **keys):
    return {"name": name, "roles": ["data_owner"], "crypten": False, **keys}


def test_roster_ranks_compute_parties_then_dealer_then_outside_parties():
    spec = base()
    a, b = spec["party"]
    spec["party"] = [a, outside("o1", failure="optional"), b, outside("o2")]
    roster = spec_from_dict(spec).roster
    assert [p.name for p in roster.parties] == ["a", "b"] and roster.world_size == 2
    assert roster.dealer.rank == 2 and roster.crypten_world
    assert [(p.name, p.rank) for p in roster.outside] == [("o1", 3), ("o2", 4)]
    assert [p.rank for p in roster.processes] == [0, 1, 2, 3, 4]
    assert roster.by_name("o1").failure == "optional" and not roster.by_rank(4).crypten
    assert roster.by_name("a").crypten and roster.by_name("a").failure == "required"
    assert [p.name for p in roster.with_role("data_owner")] == ["a", "b", "o1", "o2"]
    assert roster.by_name("o1").describe() == {
        "name": "o1", "rank": 3, "roles": ["data_owner"], "crypten": False, "failure": "optional"
    }  # fmt: skip
    assert roster.by_name("a").describe() == {"name": "a", "rank": 0, "roles": ["data_owner"]}


def test_a_run_without_crypten_world_needs_dealer_none():
    raw = base(party=[outside("a"), outside("b")])
    with pytest.raises(SpecError, match=r"\[protocol\]: dealer = 'ttp': no party is in Cry"):
        spec_from_dict(raw)
    raw["protocol"]["dealer"] = "tfp"
    raw["protocol"]["insecure_dealer"] = True
    with pytest.raises(SpecError, match=r"dealer = 'tfp'.*set dealer = 'none'"):
        spec_from_dict(raw)
    raw["protocol"] = {"name": "python", "dealer": "none"}
    roster = spec_from_dict(raw).roster
    assert roster.dealer is None and not roster.crypten_world and roster.world_size == 0
    assert [(p.name, p.rank) for p in roster.processes] == [("a", 0), ("b", 1)]


def test_dealer_none_is_refused_with_a_crypten_world():
    raw = base(protocol={"name": "python", "dealer": "none"})
    raw["party"].append(outside("o"))
    with pytest.raises(SpecError, match=r"dealer = 'none' is only for runs without a CrypTen "
                       r"world, and a, b are in it \(crypten = true\)"):  # fmt: skip
        spec_from_dict(raw)


@pytest.mark.parametrize(
    ("party", "message"),
    [
        ({"failure": "optional"}, r"\[\[party\]\] c: failure = 'optional' needs crypten = false"),
        ({"failure": "maybe"}, r"failure = 'maybe': must be one of 'required', 'optional'"),
        ({"crypten": "no"}, r"crypten = 'no': expected bool"),
        ({"crypten": 0}, r"crypten = 0: expected bool"),
    ],
)
def test_outside_party_errors(party, message):
    spec = base()
    spec["party"].append({"name": "c", "roles": ["data_owner"], **party})
    with pytest.raises(SpecError, match=message):
        spec_from_dict(spec)


def test_new_party_keys_enter_the_hash_only_when_not_at_their_defaults():
    plain = spec_from_dict(base())
    explicit = base()
    explicit["party"][0].update(crypten=True, failure="required")
    assert spec_from_dict(explicit).hash == plain.hash
    assert "crypten" not in spec_from_dict(explicit).to_dict()["party"][0]
    with_outside = base()
    with_outside["party"].append(outside("c"))
    optional = base()
    optional["party"].append(outside("c", failure="optional"))
    hashes = {plain.hash, spec_from_dict(with_outside).hash, spec_from_dict(optional).hash}
    assert len(hashes) == 3


def test_python_protocol_round_trips_outside_parties_and_transport():
    raw = base(transport={"codec": "audit"})
    raw["party"].append(outside("c", failure="optional"))
    spec = spec_from_dict(raw)
    again = spec_from_dict(spec.to_dict())
    assert again == spec.__class__(**{**spec.__dict__, "source": again.source})
    assert again.parties[2].failure == "optional" and again.transport.codec == "audit"


# ------------------------------------------------------------- transport --


def test_transport_codec_is_checked_enters_the_hash_and_is_left_out_at_default():
    spec = spec_from_dict(base())
    assert spec.transport.codec == "plain" and "transport" not in spec.to_dict()
    explicit = spec_from_dict(base(transport={"codec": "plain"}))
    assert explicit.hash == spec.hash and "transport" not in explicit.to_dict()
    audit = spec_from_dict(base(transport={"codec": "audit"}))
    assert audit.to_dict()["transport"] == {"codec": "audit"} and audit.hash != spec.hash
    with pytest.raises(SpecError, match=r"\[transport\]: codec = 'aead': must be one of "
                       r"'plain', 'audit'"):  # fmt: skip
        spec_from_dict(base(transport={"codec": "aead"}))
    with pytest.raises(SpecError, match=r"\[transport\]: unknown key 'key'; allowed keys: codec"):
        spec_from_dict(base(transport={"key": "x"}))


def test_encryption_goes_off_only_with_the_insecure_flag_and_key_folders_stay_local(tmp_path):
    from secure_ml.errors import UnsafeConfigurationError

    spec = spec_from_dict(base())
    assert spec.transport.encryption == "auto" and spec.transport.keys is None
    with pytest.raises(UnsafeConfigurationError, match="also set insecure_plaintext = true"):
        spec_from_dict(base(transport={"encryption": "off"}))
    with pytest.raises(SpecError, match="insecure_plaintext = true goes only with encryption"):
        spec_from_dict(base(transport={"insecure_plaintext": True}))
    off = spec_from_dict(base(transport={"encryption": "off", "insecure_plaintext": True}))
    on = spec_from_dict(base(transport={"encryption": "on"}))
    assert len({spec.hash, off.hash, on.hash}) == 3  # every party must agree on the mode
    # a key folder is party-local: it is resolved, round-trips, and never changes the hash
    local = spec_from_dict(base(transport={"keys": "k"}), base_dir=tmp_path)
    assert local.transport.keys == str(tmp_path / "k") and local.hash == spec.hash
    assert spec_from_dict(local.to_dict()).transport.keys == str(tmp_path / "k")
    on_local = spec_from_dict(base(transport={"encryption": "on", "keys": "/k"}))
    assert on_local.hash == on.hash


# -------------------------------------------------------- family sections --


def test_family_sections_read_as_attributes_with_defaults():
    from secure_ml.spec import PartySpec, ProtocolSpec, Spec

    spec = spec_from_dict(base())
    assert spec.dp is None and spec.infer.batch_size == 64
    assert spec_from_dict(base(dp={"epsilon": 1, "delta": 1e-5})).dp.epsilon == 1.0
    bare = Spec(protocol=ProtocolSpec(name="python"), parties=(PartySpec("a", ("receiver",)),))
    assert bare.train.epochs == 5 and bare.dp is None
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        _ = spec.trian


def test_list_items_are_type_checked():
    spec = base()
    spec["party"][0]["roles"] = ["data_owner", 3]
    with pytest.raises(SpecError, match=r"roles = \['data_owner', 3\]: roles are strings"):
        spec_from_dict(spec)


def test_every_codec_the_spec_allows_exists():
    # spec.py names the codecs without importing torch; the transport builds them
    from secure_ml.spec import CODECS
    from secure_ml.transport.frames import CODECS as BUILT

    assert set(CODECS) == set(BUILT)
