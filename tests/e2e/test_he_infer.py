"""``he.infer`` through the CLI on its example specs: batched, per sample, refusals.

The models are trained here in plaintext (a few seconds), as a lab would
before serving them; every run happens with crypten made unimportable, so a
process that touched it would fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from testkit import REPO

from secure_ml.data.preprocess import Standardiser
from secure_ml.data.sources import load_source
from secure_ml.errors import EXIT_CODES, SpecError
from secure_ml.models import TaskShape, build_model

PROTOCOLS = REPO / "protocols"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: on the path of every party: importing crypten raises
NO_CRYPTEN = """
import sys

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "crypten" or name.startswith("crypten."):
            raise ImportError("crypten imported in an he.infer process")
        return None

sys.meta_path.insert(0, _Refuse())
"""


def train(
    kind: str, source: str, out: Path, *, epochs: int = 20, lr: float = 0.01, **shape: int
) -> Path:
    """A square-activation model trained in plaintext on the source's training rows."""
    data = load_source(source, test_fraction=0.2, seed=0)
    x, y = data.x_train, data.y_train
    if x.dim() == 2:
        x = Standardiser.fit(x).transform(x).clamp(-4, 4)
    outputs = 1 if data.task == "binary" else data.n_classes
    model = build_model(kind, TaskShape(tuple(x.shape[1:]), outputs), seed=0,
                        activation="square", **shape)  # fmt: skip
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(64):
            logits = model(x[rows])
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0],
                    y[rows].float()) if outputs == 1 else
                    torch.nn.functional.cross_entropy(logits, y[rows]))  # fmt: skip
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    path = out / f"{kind}.pt"
    torch.save(model.state_dict(), path)
    return path


def run(spec: str, out: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    guard = out.parent / "no-crypten"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_CRYPTEN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(guard), str(REPO)])}
    command = [sys.executable, "-m", "secure_ml", "run", str(PROTOCOLS / spec), "--out", str(out),
               "--quiet", *[a for o in overrides for a in ("--set", o)]]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_batched_digits_mlp_agrees_with_plaintext_and_reports_its_costs(tmp_path):
    weights = train("mlp", "sklearn:digits", tmp_path, hidden=(32,))
    run("he_infer_digits_mlp.toml", tmp_path / "out", f"model.weights={weights}")
    got = result(tmp_path / "out")
    m = got["metrics"]
    assert got["protocol"] == "he.infer" and got["revealed_to"] == {"predictions": ["clinic"]}
    assert m["n_predictions"] == 359 and m["samples_per_round_trip"] == 359
    # the bar: at least 99 % equal argmax; CKKS's own error is tiny
    assert m["agreement_with_plaintext"] >= 0.99 and m["max_abs_error"] < 0.1
    assert m["accuracy"] > 0.9
    ckks = m["ckks"]
    assert ckks["security_bits"] == 128 and ckks["total_modulus_bits"] <= 218
    assert ckks["poly_modulus_degree"] == 8192 and ckks["model_depth"] == ckks["depth"] == 3
    # up: the public context (no Galois keys) and one ciphertext per input feature
    assert "galois_keys" not in m["key_bytes"]
    assert m["bytes_client_to_server"] > m["public_context_bytes"] + 64 * 100_000
    assert 10 * 100_000 < m["bytes_server_to_client"] < m["bytes_client_to_server"] / 5
    assert m["samples_per_second"] > 0 and m["latency_s"] > 0 and m["server_evaluation_s"] > 0
    predictions = torch.load(tmp_path / "out" / "predictions.pt")
    assert predictions.shape == (359, 10)
    # only the client holds predictions; the server reports nothing but its own time
    lab = tmp_path / "out" / "parties" / "lab"
    assert not (lab / "predictions.pt").exists()
    assert set(json.loads((lab / "result-lab.json").read_text())["metrics"]) == {
        "server_evaluation_s"}  # fmt: skip

    # the same model, one sample per ciphertext (rotations, Galois keys)
    run("he_infer_digits_mlp.toml", tmp_path / "one", f"model.weights={weights}",
        "he.mode=per_sample", "he.max_samples=2")  # fmt: skip
    one = result(tmp_path / "one")["metrics"]
    assert one["n_predictions"] == 2 and one["samples_per_round_trip"] == 1
    assert one["agreement_with_plaintext"] == 1.0 and one["max_abs_error"] < 0.1
    assert one["key_bytes"]["galois_keys"] > one["key_bytes"]["relin_keys"]
    assert torch.allclose(torch.load(tmp_path / "one" / "predictions.pt"), predictions[:2],
                          atol=0.1)  # fmt: skip


def test_logreg_probabilities_cnn_on_8x8_digits_and_a_model_too_deep(tmp_path):
    weights = train("logreg", "sklearn:breast_cancer", tmp_path)
    run("he_infer_breast_cancer_logreg.toml", tmp_path / "bc", f"model.weights={weights}")
    m = result(tmp_path / "bc")["metrics"]
    approx = m["sigmoid_approximation"]
    assert m["output"] == "probabilities" and m["agreement_with_plaintext"] >= 0.99
    # the cubic is fitted over every logit the clamped inputs can reach; its error is stated
    assert approx["range"][1] > 4 and m["max_abs_error"] <= approx["max_abs_error"] + 0.01
    probabilities = torch.load(tmp_path / "bc" / "predictions.pt")
    assert probabilities.shape == (114, 1)

    cnn = train("cnn", "sklearn:digits_images", tmp_path, epochs=10, channels=2, lr=0.05)
    cnn_spec = ["data.source=sklearn:digits_images", "model.kind=cnn", "model.channels=2",
                "he.input_bound=1.0",  # pixels lie in [0, 1]
                f"model.weights={cnn}"]  # fmt: skip
    run("he_infer_digits_mlp.toml", tmp_path / "cnn", *cnn_spec)
    m = result(tmp_path / "cnn")["metrics"]
    assert m["ckks"]["model_depth"] == 5 and m["ckks"]["poly_modulus_degree"] == 16384
    # two square channels learn digits only roughly; the point is the agreement
    assert m["agreement_with_plaintext"] >= 0.99 and m["accuracy"] > 0.5

    # depth 5 does not fit N = 8192 at 128 bits: refused at the plan, before any encryption
    refused = run("he_infer_digits_mlp.toml", tmp_path / "deep", *cnn_spec,
                  "he.poly_modulus_degree=8192", check=False)  # fmt: skip
    assert refused.returncode == EXIT_CODES[SpecError], refused.stderr
    said = refused.stderr + refused.stdout
    assert "depth 5 does not fit" in said and "party lab" in said
    client_log = (tmp_path / "deep" / "logs" / "clinic.log").read_text()
    assert "encrypting" not in client_log
