"""A party that raises, is killed, is stopped or hangs ends the run, naming it.

pytest-timeout bounds each test (a hang fails the test instead of CI); the
launcher itself has a much longer timeout, so these pass only if the failure
is detected, not timed out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cloudpickle
import pytest
import torch
from mpkit import make_spec
from testkit import processes_mentioning

import secure_ml
from secure_ml.errors import (
    EXIT_CODES,
    UNEXPECTED_EXIT_CODE,
    LaunchTimeout,
    PartyFailure,
    SpecMismatchError,
    exit_code_for,
)

pytestmark = pytest.mark.multiparty
LONG_LAUNCH_TIMEOUT_S = 600


def fail_on_p1(how):
    def body(session):
        x = session.share(torch.ones(3) if session.name == "p0" else None, owner="p0")
        if session.name == "p1":
            if how == "raise":
                raise ValueError("boom on purpose")
            os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        # the survivors keep computing and would wait for p1 forever
        for _ in range(10_000):
            x = x * x
        return session.reveal(x, to=["p0"])

    return body


@pytest.mark.timeout(45)
@pytest.mark.parametrize(
    ("how", "cause", "exit_code"),
    [
        # a bug (here the user's function) exits 70 as the CLI would, not 9
        ("raise", r"p1 \(rank 1\) failed: ValueError: boom on purpose", UNEXPECTED_EXIT_CODE),
        ("kill", r"p1 \(rank 1\) failed: killed by signal SIGKILL", EXIT_CODES[PartyFailure]),
        ("stop", r"p1 \(rank 1\) failed: process is stopped", EXIT_CODES[PartyFailure]),
    ],
)
def test_failed_party_ends_the_run_and_leaves_no_process(how, cause, exit_code, tmp_path):
    with pytest.raises(PartyFailure, match=cause) as info:
        secure_ml.run(
            fail_on_p1(how), make_spec("ttp"), out=tmp_path, timeout=LONG_LAUNCH_TIMEOUT_S
        )
    assert exit_code_for(info.value) == exit_code
    assert processes_mentioning(str(tmp_path)) == []


def sleep_forever(session):
    time.sleep(3600)


@pytest.mark.timeout(45)
def test_global_timeout_stops_every_party(tmp_path):
    with pytest.raises(LaunchTimeout, match="timeout of 8s"):
        secure_ml.run(sleep_forever, make_spec("3pc"), out=tmp_path, timeout=8)
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.timeout(90)
def test_parties_started_with_different_specs_all_stop(tmp_path, repo_spec_file):
    """Two `secure-ml party` processes (as on two hosts) with different epochs."""
    rendezvous = f"file://{tmp_path / 'rdzv'}"
    function = tmp_path / "noop.pkl"
    # any one-argument callable will do: the run must stop before calling it
    function.write_bytes(cloudpickle.dumps(id))
    procs = []
    for rank, epochs in ((0, 5), (1, 6)):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "RENDEZVOUS": rendezvous}
        cmd = [sys.executable, "-m", "secure_ml", "party", str(repo_spec_file),
               "--set", f"train.epochs={epochs}", "--out", str(tmp_path / f"r{rank}"),
               "--function", str(function)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=80)[1] for p in procs]
    for proc, err in zip(procs, outputs, strict=True):
        assert proc.returncode == EXIT_CODES[SpecMismatchError], err
        assert "started with different specs" in err


@pytest.fixture
def repo_spec_file(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(
        '[protocol]\nname = "python"\ndealer = "tfp"\ninsecure_dealer = true\n'
        '[[party]]\nname = "a"\nroles = ["data_owner"]\n'
        '[[party]]\nname = "b"\nroles = ["data_owner"]\n'
    )
    return path
