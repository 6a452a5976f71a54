"""The secure-ml command on the example specs, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from testkit import REPO, processes_mentioning

from secure_ml.errors import EXIT_CODES, SpecError, UnsafeConfigurationError
from secure_ml.models import LogisticRegression

SPECS = sorted((REPO / "protocols").glob("*.toml"))
QUICKSTART = REPO / "protocols" / "mpc_train_quickstart.toml"
RESULT_KEYS = {
    "protocol", "spec_hash", "parties", "metrics", "privacy", "comm", "timings",
    "versions", "revealed_to",
}  # fmt: skip


def secure_ml(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "secure_ml", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_every_example_spec_checks(spec):
    out = secure_ml("spec", "check", str(spec))
    assert out.returncode == 0, out.stderr
    assert "ok (" in out.stdout


def test_bad_spec_exits_with_one_line_naming_the_key(tmp_path):
    out = secure_ml("spec", "check", str(QUICKSTART), "--set", "train.epochs=0")
    assert out.returncode == EXIT_CODES[SpecError]
    assert out.stderr.strip().count("\n") == 0
    assert "[train]: epochs = 0: must be an integer >= 1" in out.stderr


def test_tfp_without_insecure_flag_is_refused():
    out = secure_ml("run", str(QUICKSTART), "--set", "protocol.dealer=tfp")
    assert out.returncode == EXIT_CODES[UnsafeConfigurationError] == 4
    assert "insecure_dealer = true" in out.stderr


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_quickstart_runs_and_writes_result_json(tmp_path):
    out = secure_ml("run", str(QUICKSTART), "--out", str(tmp_path), timeout=280)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result) >= RESULT_KEYS
    assert result["protocol"] == "mpc.train" and result["privacy"] is None
    metrics = result["metrics"]
    assert abs(metrics["accuracy"] - metrics["plaintext_accuracy"]) <= 0.02
    assert [p["name"] for p in result["parties"]] == [
        "hospital_a", "hospital_b", "hospital_c", "dealer",
    ]  # fmt: skip
    comm = result["comm"]
    assert comm["bytes"] == sum(p["bytes"] for p in comm["per_party"])
    assert comm["rounds"] == max(p["rounds"] for p in comm["per_party"] if p["name"] != "dealer")
    assert set(result["timings"]) == {"total", "setup", "compute", "train"}
    assert result["timings"]["train"] <= result["timings"]["compute"] <= result["timings"]["total"]
    assert result["revealed_to"]["model"] == ["hospital_c"]
    for party in ("hospital_a", "hospital_b", "hospital_c", "dealer"):
        assert (tmp_path / "logs" / f"{party}.log").is_file()
    holders = sorted(p.parent.name for p in (tmp_path / "parties").glob("*/model.pt"))
    assert holders == ["hospital_c"]
    model = LogisticRegression(30)
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert "accuracy" in out.stdout and "rounds" in out.stdout
    assert processes_mentioning(str(tmp_path)) == []


def test_python_protocol_cannot_be_run_from_the_cli(tmp_path: Path):
    spec = tmp_path / "fn.toml"
    spec.write_text('[protocol]\nname = "python"\n[[party]]\nname = "a"\nroles = ["data_owner"]\n')
    out = secure_ml("run", str(spec), "--out", str(tmp_path / "o"))
    assert out.returncode == EXIT_CODES[SpecError]
    assert "secure_ml.run(fn, spec)" in out.stderr
