"""The privacy-budget ledger: composition, refusals, bad files, concurrency, crashes.

Processes are plain ``sys.executable -c`` children, started together so that
the file's cost is one interpreter start-up. The crash test kills children
with SIGKILL at several points of their charge loop; it never sleeps for a set
time or asserts on one: it reads the children's progress lines instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secure_ml.errors import DataError, PrivacyBudgetExceeded, SpecError
from secure_ml.release.accounting import GaussianSteps, epsilon_for
from secure_ml.release.ledger import Ledger

pytest.importorskip("opacus")

REPO = Path(__file__).resolve().parents[2]


def laplace(epsilon: float, name: str = "mean") -> dict:
    return {"kind": "laplace", "epsilon": epsilon, "name": name}


def gaussian(sigma: float = 2.0, name: str = "sum", rate: float = 1.0, steps: int = 1) -> dict:
    return {
        "kind": "gaussian",
        "noise_multiplier": sigma,
        "sample_rate": rate,
        "steps": steps,
        "name": name,
    }


def ledger(path: Path, epsilon: float = 1.0, owner: str = "alice") -> Ledger:
    return Ledger(path, owner=owner, epsilon=epsilon, delta=1e-5)


def test_fresh_ledger_charges_and_persists(tmp_path):
    path = tmp_path / "dp" / "alice.json"
    book = ledger(path)
    assert book.spent() == (0.0, 0.0)
    assert book.remaining() == 1.0
    assert not path.exists()
    book.charge(laplace(0.25))
    book.charge(laplace(0.5, "count"))
    again = ledger(path)
    assert again.spent() == (0.75, 0.0)
    assert again.remaining() == pytest.approx(0.25)
    data = json.loads(path.read_text())
    assert data["owner"] == "alice"
    assert data["budget"] == {"epsilon": 1.0, "delta": 1e-5}
    assert data["accountant"] == "rdp"
    assert data["spent"] == {"epsilon": 0.75, "delta": 0.0}
    assert [e["name"] for e in data["entries"]] == ["mean", "count"]


def test_gaussian_charges_compose_through_rdp(tmp_path):
    book = ledger(tmp_path / "l.json", epsilon=50.0)
    single = epsilon_for([GaussianSteps(2.0, 1.0, 1)], 1e-5)
    for k in range(5):
        book.charge(gaussian(name=f"g{k}"))
    spent, delta = book.spent()
    assert delta == 1e-5
    assert spent == pytest.approx(epsilon_for([GaussianSteps(2.0, 1.0, 5)], 1e-5), rel=1e-12)
    assert spent < 5 * single


def test_mixed_kinds_add_laplace_to_the_gaussian_composition(tmp_path):
    book = ledger(tmp_path / "l.json", epsilon=50.0)
    book.charge(gaussian(rate=0.01, steps=100))
    book.charge(laplace(0.5))
    gaussian_part = epsilon_for([GaussianSteps(2.0, 0.01, 100)], 1e-5)
    assert book.spent() == (pytest.approx(gaussian_part + 0.5), 1e-5)


def test_refusal_names_owner_cost_spent_left_and_writes_nothing(tmp_path):
    path = tmp_path / "l.json"
    book = ledger(path)
    book.charge(laplace(0.75))
    before = path.read_bytes()
    with pytest.raises(PrivacyBudgetExceeded) as refused:
        book.charge(laplace(0.5, "too-much"))
    message = str(refused.value)
    for part in ("'alice'", "'too-much'", "cost ε=0.5", "spent ε=0.75", "left ε=0.25"):
        assert part in message
    assert "Nothing was released" in message
    assert path.read_bytes() == before
    with pytest.raises(PrivacyBudgetExceeded):
        book.check(laplace(0.5))
    book.check(laplace(0.25))  # exactly the rest is affordable, and check writes nothing
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_not_reset(tmp_path):
    path = tmp_path / "l.json"
    for text in ("{not json", '{"owner": "alice"}', "[]"):
        path.write_text(text)
        with pytest.raises(DataError, match=f"{path}.*restore it") as refused:
            ledger(path).charge(laplace(0.1))
        assert "not reset" in str(refused.value)
        assert path.read_text() == text


def test_owner_budget_or_accountant_mismatch_is_refused(tmp_path):
    path = tmp_path / "l.json"
    ledger(path).charge(laplace(0.1))
    others = [
        ledger(path, owner="bob"),
        ledger(path, epsilon=2.0),
        Ledger(path, owner="alice", epsilon=1.0, delta=1e-5, accountant="prv"),
    ]
    for other in others:
        with pytest.raises(SpecError, match=f"{path}.*'alice'.*dp.ledger"):
            other.charge(laplace(0.1))


def test_bad_entries_are_refused(tmp_path):
    book = ledger(tmp_path / "l.json")
    with pytest.raises(ValueError, match="kind"):
        book.charge({"kind": "exponential", "name": "x"})
    with pytest.raises(ValueError, match="keys"):
        book.charge({"kind": "laplace", "epsilon": 0.1})
    with pytest.raises(ValueError, match="epsilon"):
        book.charge(laplace(-0.1))
    with pytest.raises(ValueError, match="sample_rate"):
        book.charge(gaussian(rate=2.0))


#: the children load ``secure_ml.release`` as a bare namespace: its ``__init__``
#: imports torch (for ``reveal``), which would make each start-up cost a second
CHILD_PRELUDE = """
import sys, types
release = types.ModuleType("secure_ml.release")
release.__path__ = [sys.argv[1] + "/secure_ml/release"]
sys.modules["secure_ml.release"] = release
from secure_ml.errors import PrivacyBudgetExceeded
from secure_ml.release.ledger import Ledger
book = Ledger(sys.argv[2], owner="alice", epsilon=float(sys.argv[3]), delta=1e-5)
"""


def start_child(body: str, *args: str) -> subprocess.Popen:
    code = CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(REPO), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_concurrent_processes_cannot_overspend(tmp_path):
    """Six processes each charge 0.3 of a 1.0 budget at once: exactly three succeed."""
    path, go = tmp_path / "l.json", tmp_path / "go"
    body = """
    import os, time
    print("ready", flush=True)
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.001)
    try:
        book.charge({"kind": "laplace", "epsilon": 0.3, "name": "race"})
        print("charged", flush=True)
    except PrivacyBudgetExceeded:
        print("refused", flush=True)
    """
    children = [start_child(body, str(path), "1.0", str(go)) for _ in range(6)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    outcomes = [child.communicate(timeout=60)[0].strip() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sorted(outcomes) == ["charged"] * 3 + ["refused"] * 3
    assert len(ledger(path).entries()) == 3
    assert ledger(path).spent()[0] == pytest.approx(0.9)


def test_sigkill_mid_charge_never_loses_a_returned_charge(tmp_path):
    """Kill children after 1..5 reported charges: the file parses and holds them all.

    A charge that was written but not yet reported may be on file too, so the
    count is the reported number or one more; never fewer (that would forget
    a spend). The children run side by side, one ledger each.
    """
    body = """
    for k in range(100000):
        book.charge({"kind": "laplace", "epsilon": 1e-6, "name": f"r{k}"})
        print(k, flush=True)
    """
    kill_after = [1, 2, 3, 4, 5, 3]
    paths = [tmp_path / f"l{i}.json" for i in range(len(kill_after))]
    children = [start_child(body, str(path), "1.0") for path in paths]
    for child, lines in zip(children, kill_after, strict=True):
        for _ in range(lines):
            assert child.stdout.readline() != ""
    reported = []
    for child, lines in zip(children, kill_after, strict=True):
        child.send_signal(signal.SIGKILL)
        # read through the text buffer: communicate() would skip what readline() buffered
        reported.append(lines + len(child.stdout.read().splitlines()))
        assert child.wait(timeout=60) == -signal.SIGKILL
    for path, returned in zip(paths, reported, strict=True):
        book = ledger(path)
        entries = book.entries()  # parses, and is alice's ledger with valid entries
        assert returned <= len(entries) <= returned + 1
        assert [e["name"] for e in entries] == [f"r{k}" for k in range(len(entries))]
        assert book.spent()[0] == pytest.approx(len(entries) * 1e-6)
