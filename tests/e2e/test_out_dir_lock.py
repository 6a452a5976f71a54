"""Two runs with the same --out DIR: the second refuses at once and touches nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from testkit import REPO

from secure_ml.errors import EXIT_CODES, OutputInUse
from secure_ml.launch.lock import hold_output

QUICKSTART = REPO / "protocols" / "mpc_train_quickstart.toml"
HOLDER = """
import sys, time
from secure_ml.launch.lock import hold_output
with hold_output(sys.argv[1], spec_source="first-run.toml"):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.mark.timeout(120)
def test_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    first_files = {out / "logs" / "hospital_a.log": "first run's log\n", out / "result.json": "{}"}
    for path, text in first_files.items():
        path.write_text(text)
    # the first run: another process holding the folder, as `secure-ml run` does
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(
            [sys.executable, "-m", "secure_ml", "run", str(QUICKSTART), "--out", str(out),
             "--quiet", "--set", "train.epochs=1"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert second.returncode == EXIT_CODES[OutputInUse], second.stderr
        line = second.stderr.strip()
        assert line.count("\n") == 0, line
        assert f"pid {holder.pid}," in line and "spec first-run.toml" in line
        assert "started 20" in line and "--out" in line
        for path, text in first_files.items():
            assert path.read_text() == text
        assert sorted(p.name for p in out.iterdir()) == [".lock", "logs", "result.json"]
        assert [p.name for p in (out / "logs").iterdir()] == ["hospital_a.log"]
        with (
            pytest.raises(OutputInUse, match=f"pid {holder.pid},"),
            hold_output(out, spec_source="third.toml"),
        ):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a crash: the kernel drops the lock
        holder.wait()
    with hold_output(out, spec_source="after-crash.toml"):
        assert f'"pid": {os.getpid()}' in (out / ".lock").read_text()
