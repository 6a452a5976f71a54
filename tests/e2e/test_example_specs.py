"""Every example spec in protocols/ runs through `secure-ml run`, on small data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from testkit import REPO

from secure_ml.errors import EXIT_CODES, DataError, SpecError

PROTOCOLS = REPO / "protocols"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SMALL = ["train.epochs=1"]
#: the MLP example at its smallest: 8 hidden units, 1 epoch of batches of 128
TINY_MLP = [*SMALL, "model.hidden=[8]", "train.batch_size=128"]


def run(spec: str, out: Path, *overrides: str, env: dict | None = None) -> dict:
    command = [sys.executable, "-m", "secure_ml", "run", str(PROTOCOLS / spec), "--out", str(out),
               "--quiet", *[a for o in overrides for a in ("--set", o)]]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def example_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("example-data")
    subprocess.run(
        [sys.executable, str(PROTOCOLS / "data" / "make_example_data.py"), str(out)], check=True
    )
    return out


@pytest.mark.parametrize(
    ("spec", "overrides", "metric", "receiver"),
    [
        ("mpc_train_digits_mlp_horizontal.toml", TINY_MLP, "accuracy", "clinic_c"),
        ("mpc_train_breast_cancer_vertical.toml", SMALL, "accuracy", "clinic"),
        ("mpc_train_breast_cancer_tuned.toml", [*SMALL, "mpc.precompute=false"], "accuracy",
         "clinic"),
        ("mpc_train_diabetes_regression.toml", SMALL, "mse", "hospital"),
    ],
)  # fmt: skip
def test_training_examples(spec, overrides, metric, receiver, tmp_path):
    result = run(spec, tmp_path, *overrides)
    metrics = result["metrics"]
    assert abs(metrics[metric] - metrics[f"plaintext_{metric}"]) <= 0.05
    assert sorted(p.parent.name for p in (tmp_path / "parties").glob("*/model.pt")) == [receiver]


def test_csv_vertical_example(example_data, tmp_path):
    result = run(
        "mpc_train_csv_vertical.toml", tmp_path, "train.epochs=1",
        f"party.hospital_a.data=csv:{example_data / 'hospital_a.csv'}",
        f"party.hospital_b.data=csv:{example_data / 'hospital_b.csv'}",
    )  # fmt: skip
    assert result["metrics"]["accuracy"] > 0.9
    assert result["metrics"]["plaintext_accuracy"] is None  # private data: no pooled baseline
    assert result["revealed_to"]["model"] == ["hospital_b"]


def test_resnet18_inference_example_matches_pytorch(example_data, tmp_path):
    from secure_ml.data.images import load_images
    from secure_ml.models import TaskShape, build_model

    root = example_data / "cifar"
    result = run(
        "mpc_infer_resnet18_cifar.toml", tmp_path, f"data.source=torchvision:CIFAR10:{root}"
    )
    secure = torch.load(tmp_path / "parties" / "client" / "predictions.pt")
    images = load_images("CIFAR10", root, train=False).images
    model = build_model("torchvision:resnet18", TaskShape((3, 32, 32), 10), seed=0).eval()
    with torch.no_grad():
        plain = model(images)
    assert float((secure - plain).abs().max()) < 0.05
    top2 = plain.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.1  # compare argmax only where it is well defined
    assert torch.equal(secure.argmax(1)[clear], plain.argmax(1)[clear])
    assert result["metrics"]["max_abs_error"] < 0.05
    assert not (tmp_path / "parties" / "vision_lab" / "predictions.pt").exists()


def opened_kept_model(parties: Path) -> dict[str, torch.Tensor]:
    """The weights the kept shares add up to (the test sees every party's file)."""
    files = [torch.load(f) for f in sorted(parties.glob("*/model-shares.pt"))]
    return {name: sum(f["shares"][name] for f in files).double() / 2**16
            for name in files[0]["shares"]}  # fmt: skip


def test_kept_shares_train_then_infer(tmp_path):
    from secure_ml.data.local import load_local
    from secure_ml.models import LogisticRegression
    from secure_ml.spec import load_spec

    kept = tmp_path / "kept"
    trained = run("mpc_train_kept_shares.toml", kept, "train.epochs=1", "train.batch_size=128")
    assert "model" not in trained["revealed_to"] and not (kept / "model.pt").exists()
    assert len(list((kept / "parties").glob("*/model-shares.pt"))) == 3
    # each owner's scaler stays in its own directory, and names its columns
    scalers = {p.parent.name: torch.load(p) for p in (kept / "parties").glob("*/scaler.pt")}
    assert sorted(scalers) == ["hospital_a", "hospital_b", "hospital_c"]
    assert [scalers[h]["columns"] for h in sorted(scalers)] == [[0, 10], [10, 20], [20, 30]]
    assert "scaler" not in json.dumps(trained["revealed_to"])
    inferred = run(
        "mpc_infer_kept_shares.toml",
        tmp_path / "infer",
        f"model.kind=shares:{kept}/parties/{{party}}",
    )
    assert abs(inferred["metrics"]["accuracy"] - trained["metrics"]["accuracy"]) <= 0.05
    assert set(inferred["revealed_to"]) == {"predictions"}
    assert inferred["revealed_to"]["predictions"] == ["hospital_c"]
    # the plaintext model on the raw new rows, scaled with the owners' scalers
    spec = load_spec(PROTOCOLS / "mpc_infer_kept_shares.toml")
    raw = load_local(spec, spec.roster.by_name("hospital_c")).x_test.double()
    mean = torch.cat([scalers[h]["features"]["mean"] for h in sorted(scalers)])
    std = torch.cat([scalers[h]["features"]["std"] for h in sorted(scalers)])
    model = LogisticRegression(30).double()
    model.load_state_dict(opened_kept_model(kept / "parties"))
    with torch.no_grad():
        plain = model((raw - mean) / std)
    secure = torch.load(tmp_path / "infer" / "parties" / "hospital_c" / "predictions.pt")
    assert float((secure - plain).abs().max()) < 0.01


SCALED_MODEL = """
import torch


class ScaledLinear(torch.nn.Module):
    def __init__(self, n_in):
        super().__init__()
        self.linear = torch.nn.Linear(n_in, 1)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, n_in))
        self.offset = torch.linspace(-0.3, 0.3, n_in)  # exported as a Constant node
        self.divisor = torch.full((n_in,), 1.7)

    def forward(self, x):
        return self.linear(x * self.scale / self.divisor + self.offset) - 0.125
"""


def test_checkpoint_buffers_and_constants_are_shared_not_sent(tmp_path):
    import os

    (tmp_path / "scaled.py").write_text(SCALED_MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        from scaled import ScaledLinear
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(ScaledLinear(30), checkpoint)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    owner = ["party.hospital_a.roles=['model_owner']", f"model.kind=checkpoint:{checkpoint}"]
    result = run("mpc_infer_kept_shares.toml", tmp_path / "o", *owner, env=env)
    # a blank graph whose constants were zeroed but still computed in the clear
    # at the data owner would disagree with the owner's model
    assert result["metrics"]["agreement_with_plaintext"] == 1.0
    assert result["metrics"]["max_abs_error"] < 0.01
    assert result["revealed_to"] == {"predictions": ["hospital_c"]}


def test_bad_csv_row_stops_the_run_naming_file_line_and_column(example_data, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = (example_data / "hospital_a.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[2] = "n/a"
    lines[3] = ",".join(cells)
    bad.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "secure_ml", "run", str(PROTOCOLS / "mpc_train_csv_vertical.toml"),
         "--out", str(tmp_path / "o"), "--quiet", "--set", f"party.hospital_a.data=csv:{bad}",
         "--set", f"party.hospital_b.data=csv:{example_data / 'hospital_b.csv'}"],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    # the party's own error decides the exit code; the one line still names the party
    assert done.returncode == EXIT_CODES[DataError], done.stderr
    assert "party hospital_a (rank 0) failed: DataError" in done.stderr
    assert "bad.csv: line 4" in done.stderr and "'n/a'" in done.stderr


def test_unsupported_layers_are_refused_before_computing(tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save(
        torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)),
        checkpoint,
    )
    done = subprocess.run(
        [sys.executable, "-m", "secure_ml", "run", str(PROTOCOLS / "mpc_infer_kept_shares.toml"),
         "--out", str(tmp_path / "o"), "--quiet", "--set", f"model.kind=checkpoint:{checkpoint}",
         "--set", "party.hospital_a.roles=['model_owner']"],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert done.returncode == EXIT_CODES[SpecError], done.stderr
    assert "hospital_a" in done.stderr and "SpecError" in done.stderr
    assert "cannot compute on shares: Tanh" in done.stderr
