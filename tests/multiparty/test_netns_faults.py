"""Faults across hosts: a process killed, stopped or cut off, at three points of a run.

Two parties and the dealer run in three namespaces, as on three machines
with nobody watching them: each process learns of a failure only from its own
links. One process (the victim) is killed (SIGKILL), stopped (SIGSTOP) or
unplugged (its ``eth0`` goes down) during start-up, during training or during
the final reveal. Every other process must exit non-zero within the
collective timeout (plus start-up and exit slack), naming the victim, and
nothing is revealed: the receiver never gets the value. Each fault meets each
stage once, and each process is a victim at start-up and in training (9 runs,
three at a time, each on its own bridge).

The reveal's victims are parties: the reveal needs no dealer, so a dealer
lost during it does not stop the parties (the dealer itself still exits
non-zero, its watch naming party 0, whose store it can no longer reach).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from netns import (
    Testnet,
    function_spec,
    netns_available,
    pickled_function,
    run_parties_in_netns,
    unique_prefix,
)

from secure_ml.transport.notices import LINGER_S

pytestmark = pytest.mark.multiparty

NAMES = ("p0", "p1", "dealer")
COLLECTIVE_TIMEOUT_S = 10
#: a survivor's bound after the fault: the timeout, then its exit (and, for a
#: fault at start-up, the rest of the victim's imports, which it may not finish)
SLACK_S = 12
TRAIN_STEPS = 60
SPEC = function_spec(("p0", "p1"), receiver="p1", collective_timeout=COLLECTIVE_TIMEOUT_S)


@dataclass(frozen=True)
class Case:
    stage: str  # "start-up", "training" or "reveal"
    fault: str  # "kill", "stop" or "unplug"
    victim: str

    def __str__(self) -> str:
        return f"{self.fault} {self.victim} during {self.stage}"


CASES = [
    Case("start-up", "kill", "p1"),
    Case("start-up", "stop", "dealer"),
    Case("start-up", "unplug", "p0"),
    Case("training", "kill", "dealer"),
    Case("training", "stop", "p0"),
    Case("training", "unplug", "p1"),
    Case("reveal", "kill", "p0"),
    Case("reveal", "stop", "p1"),
    Case("reveal", "unplug", "p0"),
]


class Body:
    """Share, train a while, reveal to p1; leave a mark file at each stage."""

    def __init__(self, marks: Path) -> None:
        self.marks = str(marks)

    def mark(self, session, stage: str) -> None:
        (Path(self.marks) / f"{session.name}-{stage}").touch()

    def __call__(self, session):
        x = session.share(torch.full((8,), 0.5) if session.name == "p0" else None, owner="p0")
        w = session.share(torch.full((8,), 0.9) if session.name == "p1" else None, owner="p1")
        for step in range(TRAIN_STEPS):
            x = x * w + 0.05
            if step == 5:
                self.mark(session, "training")
        self.mark(session, "reveal")
        time.sleep(2.0)  # the victim's fault lands here, as the others reveal
        opened = session.reveal(x, to=["p1"])
        if opened is not None:
            self.mark(session, "opened")


def _inject(net: Testnet, run, case: Case, marks: Path) -> float:
    """Wait for the victim to reach the stage, apply the fault; return when (monotonic)."""
    host = run.host(case.victim)
    if case.stage == "start-up":
        time.sleep(1.0)  # it is importing: the rendezvous has not happened yet
    else:
        # the dealer runs no function: it serves p0 while p0 is at the stage
        mark = marks / f"{'p0' if case.victim == 'dealer' else case.victim}-{case.stage}"
        deadline = time.monotonic() + 90
        while not mark.exists():
            assert time.monotonic() < deadline, f"{case.victim} never reached {case.stage}"
            assert run.procs[case.victim].poll() is None, run.log(case.victim)
            time.sleep(0.05)
    if case.fault == "unplug":
        net.link_down(host)
    else:
        sig = signal.SIGKILL if case.fault == "kill" else signal.SIGSTOP
        os.killpg(run.procs[case.victim].pid, sig)
    return time.monotonic()


def _run_case(index: int, case: Case, tmp_path: Path) -> list[str]:
    """One run with one fault; the problems found (empty when all is well)."""
    out = tmp_path / f"case{index}"
    marks = out / "marks"
    marks.mkdir(parents=True)
    (out / "spec.toml").write_text(SPEC)
    function = out / "body.pkl"
    function.write_bytes(pickled_function(Body(marks)))
    problems = []
    with Testnet(unique_prefix(f"f{index}"), len(NAMES), subnet=f"10.231.{20 + index}") as net:
        args = ["--function", str(function)]
        run = run_parties_in_netns(net, out / "spec.toml", out / "runs", extra_args=args)
        try:
            injected = _inject(net, run, case, marks)
            survivors = [n for n in NAMES if n != case.victim]
            # at start-up, rank 0 also keeps the store up a moment for the others
            linger = LINGER_S if case.stage == "start-up" else 0.0
            codes = run.wait(timeout=COLLECTIVE_TIMEOUT_S + SLACK_S + linger, names=survivors)
            took = time.monotonic() - injected
            for name in survivors:
                log = run.log(name, tail=None)
                if codes[name] is None:
                    problems.append(f"{case}: {name} still running {took:.0f}s after the fault")
                elif codes[name] == 0:
                    problems.append(f"{case}: {name} exited 0")
                elif f"{case.victim} (rank" not in _error_lines(log):
                    problems.append(f"{case}: {name} did not name {case.victim}:\n{log[-1500:]}")
                if (run.outs[name] / f"result-{name}.json").exists():
                    problems.append(f"{case}: {name} wrote a result")
            if (marks / "p1-opened").exists():
                problems.append(f"{case}: p1 received the value")
        finally:
            run.kill_all()
    return problems


def _error_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if " ERROR " in line)


@pytest.mark.timeout(400)
def test_every_fault_ends_every_survivor_naming_the_victim(tmp_path):
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    with ThreadPoolExecutor(max_workers=3) as pool:
        found = pool.map(lambda case: _run_case(*case, tmp_path), enumerate(CASES))
        problems = [problem for case_problems in found for problem in case_problems]
    assert problems == [], "\n".join(problems)
