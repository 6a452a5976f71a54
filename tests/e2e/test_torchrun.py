"""launchers/torchrun.sh: every rank of a spec as one torchrun worker each.

torchrun --standalone starts 3 workers on loopback for 2 parties and the TTP
dealer; each gets only torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT, TORCHELASTIC_*) and the parties meet at the store torchrun's
agent already hosts on MASTER_PORT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from testkit import REPO

TORCHRUN = REPO / "launchers" / "torchrun.sh"
#: two data owners and the dealer, one epoch in one batch: a few seconds of MPC
SPEC = """
[protocol]
name = "mpc.train"
dealer = "ttp"
seed = 0

[[party]]
name = "alice"
roles = ["data_owner"]

[[party]]
name = "bob"
roles = ["data_owner", "label_owner", "receiver"]

[data]
source = "sklearn:breast_cancer"
partition = "vertical"

[train]
epochs = 1
batch_size = 512
lr = 0.5

[launch]
collective_timeout = 60
"""


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_torchrun_starts_every_rank_and_the_dealer(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GLOO_SOCKET_IFNAME": "lo"}
    secure_ml = REPO / ".venv" / "bin" / "secure-ml"
    if os.access(secure_ml, os.X_OK):
        env["SECURE_ML"] = str(secure_ml)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
         "--no-python", str(TORCHRUN), str(spec)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    # torchrun exits 0 only when every worker did
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for rank, name in enumerate(("alice", "bob", "dealer")):
        record = json.loads((tmp_path / "out" / f"rank-{rank}" / f"result-{name}.json").read_text())
        assert record["channel"] == "plain"  # loopback: no keys needed
    assert (tmp_path / "out" / "rank-1" / "model.pt").is_file()  # bob receives the model
