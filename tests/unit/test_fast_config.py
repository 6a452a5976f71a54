"""fast_config: CrypTen's configuration served from a snapshot, same values."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from secure_ml.compat import load_crypten
from secure_ml.sharing.fast_config import fast_config


def leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_every_value_reads_the_same_and_the_class_is_restored():
    cfg = load_crypten().cfg
    plain_class = type(cfg)
    expected = dict(leaves(OmegaConf.to_container(cfg.config, resolve=True)))
    with fast_config(cfg):
        assert type(cfg) is not plain_class
        for dotted, value in expected.items():
            assert cfg[dotted] == value, dotted
            section, *rest = dotted.split(".")
            node = getattr(cfg, section)
            for part in rest:
                node = getattr(node, part)
            assert node == value, dotted
    assert type(cfg) is plain_class and "_snapshot" not in vars(cfg)
    assert cfg.functions.exp_iterations == expected["functions.exp_iterations"]


def test_temp_override_nests_and_restores_like_crypten():
    cfg = load_crypten().cfg
    with fast_config(cfg):
        before = cfg.functions.exp_iterations
        with cfg.temp_override({"functions.exp_iterations": 3, "mpc.provider": "TTP"}):
            assert cfg.functions.exp_iterations == 3 and cfg["mpc.provider"] == "TTP"
            with cfg.temp_override({"functions.exp_iterations": 5}):
                assert cfg.functions.exp_iterations == 5 and cfg.mpc.provider == "TTP"
            assert cfg.functions.exp_iterations == 3
        assert cfg.functions.exp_iterations == before
        with pytest.raises(RuntimeError), cfg.temp_override({"functions.exp_iterations": 2}):
            raise RuntimeError("an error inside the block still restores the value")
        assert cfg.functions.exp_iterations == before


def test_direct_writes_are_refused_with_the_way_out():
    cfg = load_crypten().cfg
    with fast_config(cfg), pytest.raises(TypeError, match=r"temp_override.*fast_config = false"):
        cfg.functions.exp_iterations = 3


def test_switched_off_it_leaves_crypten_alone():
    cfg = load_crypten().cfg
    plain_class = type(cfg)
    with fast_config(cfg, enabled=False):
        assert type(cfg) is plain_class
