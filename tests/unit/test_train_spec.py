"""mpc.train's own spec checks, and the plaintext reference it is compared with."""

from __future__ import annotations

import pytest

from secure_ml.data.partition import batch_schedule, split_rows, vertical_columns
from secure_ml.errors import SpecError
from secure_ml.protocols.train import plaintext_train
from secure_ml.spec import spec_from_dict


def spec(**changes):
    raw = {
        "protocol": {"name": "mpc.train"},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "label_owner", "receiver"]},
        ],
        "data": {"source": "sklearn:breast_cancer"},
    }
    for section, values in changes.items():
        if section == "party":
            raw["party"] = values
        else:
            raw.setdefault(section, {}).update(values)
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"source": "sklearn:nope"}}, r"\[data\]: source = 'sklearn:nope'"),
        ({"data": {"partition": "horizontal"}}, "remove the 'label_owner' role"),
        ({"data": {"source": "torchvision:MNIST:/data"}}, "images are split by rows"),
        ({"model": {"kind": "resnet"}}, r"kind = 'resnet': mpc.train trains one of logreg"),
        (
            {"dp": {"epsilon": 1.0, "delta": 1e-5}, "model": {"kind": "cnn"}},
            "kind = 'cnn': DP-SGD on shares trains logreg, linreg, mlp",
        ),
        (
            {"dp": {"epsilon": 1.0, "delta": 1e-5}, "train": {"keep_shared": True}},
            "keep_shared = true is not available with \\[dp\\]",
        ),
        ({"party": [{"name": "a", "roles": ["data_owner", "receiver"]}]}, "'label_owner'"),
        ({"party": [{"name": "a", "roles": ["data_owner", "label_owner"]}]}, "'receiver'"),
    ],
)
def test_mpc_train_spec_errors(changes, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(spec(**changes))


def test_public_schedule_is_deterministic_and_covers_every_row():
    train, test = split_rows(100, test_fraction=0.2, seed=1)
    assert len(test) == 20 and set(train).isdisjoint(test)
    assert (train == split_rows(100, test_fraction=0.2, seed=1)[0]).all()
    epochs = batch_schedule(80, batch_size=32, epochs=2, seed=1)
    assert [len(b) for b in epochs[0]] == [32, 32, 16]
    assert sorted(int(i) for b in epochs[1] for i in b) == list(range(80))
    assert vertical_columns(30, 3) == [slice(0, 10), slice(10, 20), slice(20, 30)]


def test_plaintext_reference_learns_breast_cancer():
    _, metrics = plaintext_train(spec_from_dict(spec()))
    assert 0.95 <= metrics["plaintext_accuracy"] <= 1.0


@pytest.mark.parametrize("protocol", ["mpc.train", "mpc.infer"])
def test_mpc_protocols_refuse_parties_outside_crypten(protocol):
    raw = spec(protocol={"name": protocol})
    raw["party"].append({"name": "client", "roles": ["data_owner"], "crypten": False})
    with pytest.raises(SpecError, match=rf"\[\[party\]\] client: {protocol} runs every party in "
                       "CrypTen's world; party client has crypten = false"):  # fmt: skip
        spec_from_dict(raw)
