"""The env contract of one party process (secure_ml/launch/env.py), torchrun's included."""

from __future__ import annotations

import pytest

from secure_ml.cli import main
from secure_ml.errors import EXIT_CODES, SpecError
from secure_ml.launch.env import read_party_env

#: two compute parties and the dealer, as `secure-ml spec check` lists them
NAMES = ("alice", "bob", "dealer")
#: what torchrun --nproc-per-node=3 gives rank 2 (the elastic agent hosts the store)
TORCHRUN = {
    "RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", "MASTER_ADDR": "localhost",
    "MASTER_PORT": "36547", "TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_USE_AGENT_STORE": "True",
}  # fmt: skip


def test_torchrun_rank_and_its_agents_store_are_the_rendezvous():
    env = read_party_env(TORCHRUN)
    assert (env.rank, env.world_size, env.torchrun) == (2, 3, True)
    assert env.rendezvous == "tcp://localhost:36547"
    env.check(NAMES, compute=2)


def test_flags_win_over_the_environment():
    env = read_party_env(TORCHRUN, rank=0, master_addr="10.0.0.1", master_port=29501)
    assert (env.rank, env.rendezvous) == (0, "tcp://10.0.0.1:29501")
    assert not env.torchrun  # not torchrun's endpoint: its world size is not binding


@pytest.mark.parametrize("started", ["2", "4"])
def test_torchrun_starting_another_number_of_processes_fails_naming_them(started):
    env = read_party_env({**TORCHRUN, "RANK": "0", "WORLD_SIZE": started})
    with pytest.raises(SpecError, match=rf"torchrun started {started} processes .* has 3") as e:
        env.check(NAMES, compute=2)
    assert "0 alice, 1 bob, 2 dealer" in str(e.value)


def test_world_size_counts_all_processes_or_the_compute_parties_only():
    # `secure-ml run` sets CrypTen's count (compute parties), even when it runs under torchrun
    local = {"RANK": "2", "WORLD_SIZE": "2", "RENDEZVOUS": "file:///tmp/rdzv"}
    for env in (local, {**local, "TORCHELASTIC_RUN_ID": "abc"}, {**local, "WORLD_SIZE": "3"}):
        read_party_env(env).check(NAMES, compute=2)
    read_party_env({k: v for k, v in local.items() if k != "WORLD_SIZE"}).check(NAMES, 2)
    with pytest.raises(SpecError, match=r"WORLD_SIZE=5 .* counts 3 \(or its 2 compute parties\)"):
        read_party_env({**local, "WORLD_SIZE": "5"}).check(NAMES, compute=2)


def test_a_rank_outside_the_spec_is_a_spec_error():
    with pytest.raises(SpecError, match=r"rank 3: the spec has ranks 0\.\.2 \(0 alice"):
        read_party_env({**TORCHRUN, "RANK": "3", "WORLD_SIZE": "4"}).check(NAMES, compute=2)


def test_the_cli_refuses_a_wrong_world_size_before_joining(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[protocol]\nname = "mpc.train"\ndealer = "ttp"\n'
        '[[party]]\nname = "alice"\nroles = ["data_owner"]\n'
        '[[party]]\nname = "bob"\nroles = ["data_owner", "label_owner", "receiver"]\n'
        '[data]\nsource = "sklearn:breast_cancer"\npartition = "vertical"\n'
    )
    for key, value in {**TORCHRUN, "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    code = main(["party", str(spec), "--out", str(tmp_path / "out")])
    assert code == EXIT_CODES[SpecError]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: torchrun started 2 processes")
    assert not (tmp_path / "out").exists()
