"""The local launcher: every party (and the dealer) as a fresh process on this host.

Each process is a new interpreter (``subprocess.Popen``; never fork, which
deadlocks torch, and not ``multiprocessing`` spawn, which adds a resource
tracker). Each runs ``python -m secure_ml party`` with the env contract, one
torch thread, its own process group, stdout/stderr in ``DIR/logs/<party>.log``.

The launcher watches all of them. The first failure of a ``required`` process
(every compute party, the dealer, and any party by default) — an exception, a
non-zero exit, a signal, a stopped (SIGSTOP) or silent (no heartbeat) process
— or the global timeout stops every process and raises, naming the party and
its cause; a party's own error keeps its exit code (``PartyFailure.exit_code``).
A party with ``failure = "optional"`` (outside CrypTen's world) may fail
without failing the run: the launcher stops it, says so, records it in
``LaunchOutcome.dropped`` and lets the protocol go on without it. When only the
dealer and optional parties are left, they get ``DEALER_GRACE_S`` to finish.
When several parties fail together, the root cause wins over the echoes (a
peer's "connection closed" is an echo of the cause, not the cause). Children die with
the launcher (parent-death signal, and an orphan check in their heartbeat).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from secure_ml.errors import LaunchTimeout, PartyFailure
from secure_ml.launch.control import ControlReader
from secure_ml.launch.env import party_env_vars
from secure_ml.parties import Party
from secure_ml.spec import Spec

POLL_S = 0.1
#: after the first failure, how long to let the other parties' echoes land
SETTLE_S = 1.0
#: how long the dealer may linger after every compute party finished
DEALER_GRACE_S = 15.0
STOP_GRACE_S = 3.0

View = Callable[[str], None]


@dataclass
class PartyProcess:
    party: Party
    proc: subprocess.Popen
    reader: ControlReader
    log_path: Path
    out_dir: Path
    started: float = field(default_factory=time.monotonic)

    def state(self) -> str | None:
        """The kernel's process state letter ('R', 'S', 'T' stopped, 'Z' ...)."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        return stat.rsplit(")", 1)[1].split()[0]

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln]
        except OSError:
            return "no log"
        return lines[-1][-300:] if lines else "empty log"


@dataclass(frozen=True)
class LaunchOutcome:
    out_dir: Path
    control_dir: Path
    party_dirs: dict[str, Path]
    wall_seconds: float
    #: optional parties that failed, and why (the run went on without them)
    dropped: dict[str, str] = field(default_factory=dict)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the launcher dies (Linux)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the child's orphan check still ends it


def launch(
    spec: Spec,
    *,
    out_dir: str | Path,
    function_file: Path | None = None,
    timeout: float | None = None,
    view: View | None = None,
) -> LaunchOutcome:
    """Run every party of ``spec`` locally; raise on the first failure."""
    out = Path(out_dir).resolve()
    control = out / ".control"
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir(parents=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    spec_file = control / "spec.json"
    spec_file.write_text(json.dumps({"source": spec.source, "spec": spec.to_dict()}))
    rendezvous = f"file://{control / 'rendezvous'}"
    deadline_s = timeout if timeout is not None else spec.launch.timeout
    view = view or (lambda _msg: None)

    started = time.monotonic()
    processes: list[PartyProcess] = []
    dropped: dict[str, str] = {}
    try:
        for party in spec.roster.processes:
            processes.append(
                _start(spec, party, spec_file, out, control, rendezvous, function_file)
            )
        view(f"started {len(processes)} processes: " + ", ".join(p.party.name for p in processes))
        _watch(processes, spec, started, deadline_s, view, dropped)
    finally:
        _stop_all(processes)
    return LaunchOutcome(
        out_dir=out,
        control_dir=control,
        party_dirs={p.party.name: p.out_dir for p in processes},
        wall_seconds=time.monotonic() - started,
        dropped=dropped,
    )


def _optional(party: Party) -> bool:
    return party.failure == "optional"


def _lingers(party: Party) -> bool:
    """Processes the run does not wait for once every required party is done."""
    return party.is_dealer or _optional(party)


def _start(
    spec: Spec,
    party: Party,
    spec_file: Path,
    out: Path,
    control: Path,
    rendezvous: str,
    function_file: Path | None,
) -> PartyProcess:
    party_dir = out / "parties" / party.name
    log_path = out / "logs" / f"{party.name}.log"
    command = [
        sys.executable, "-m", "secure_ml", "party", str(spec_file),
        "--out", str(party_dir), "--control", str(control), "--exit-if-orphaned",
    ]  # fmt: skip
    if function_file is not None:
        command += ["--function", str(function_file)]
    env = {**os.environ, **party_env_vars(
        rank=party.rank, world_size=spec.roster.world_size, rendezvous=rendezvous
    )}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
    return PartyProcess(
        party=party,
        proc=proc,
        reader=ControlReader(control, party.name),
        log_path=log_path,
        out_dir=party_dir,
    )


def _watch(
    processes: list[PartyProcess],
    spec: Spec,
    started: float,
    deadline_s: float,
    view: View,
    dropped: dict[str, str],
) -> None:
    progress: dict[str, str | None] = {}
    compute_done_at: float | None = None
    while True:
        _drop_failed_optional(processes, spec, view, dropped)
        if _first_failure(processes, spec) is not None:
            time.sleep(SETTLE_S)  # let the consequences of the cause show up
            party, failure = _root_cause(processes, spec)
            raise PartyFailure(
                f"{party.party.name} (rank {party.party.rank})",
                f"{failure.cause} (log: {party.log_path})",
                exit_code=failure.exit_code,
            )
        _show_progress(processes, progress, started, view)
        running = [p for p in processes if p.proc.poll() is None]
        if not running:
            return
        if all(_lingers(p.party) for p in running):
            compute_done_at = compute_done_at or time.monotonic()
            if time.monotonic() - compute_done_at > DEALER_GRACE_S:
                names = ", ".join(p.party.name for p in running)
                view(f"{names} did not stop after the other parties finished; stopping")
                return
        elapsed = time.monotonic() - started
        if elapsed > deadline_s:
            names = ", ".join(p.party.name for p in running)
            raise LaunchTimeout(
                f"run exceeded its timeout of {deadline_s:g}s (parties still running: {names}); "
                "raise --timeout or [launch] timeout, or look at DIR/logs/"
            )
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Failure:
    """Why a party failed, as the launcher sees it."""

    #: lower = more likely the root cause (a peer's echo ranks last)
    priority: int
    cause: str
    #: the exit code of the error the party reported; None when it died unexplained
    exit_code: int | None = None


def _failure(p: PartyProcess, spec: Spec) -> Failure | None:
    """How ``p`` failed, or None while it is healthy or after it succeeded."""
    code = p.proc.poll()
    if code is None:
        if p.state() == "T":
            return Failure(0, "process is stopped (SIGSTOP/debugger) and blocks the other parties")
        age = p.reader.heartbeat_age()
        if age is None:
            age = time.monotonic() - p.started
        if age > spec.launch.heartbeat_timeout:
            return Failure(0, f"no heartbeat for {age:.0f}s (frozen or unresponsive)")
        return None
    if code == 0:
        return None
    if code < 0:
        return Failure(0, f"killed by signal {signal.Signals(-code).name}")
    status = p.reader.status()
    if status and not status.get("ok", True):
        if status.get("kind") == "echo":  # it failed because a peer did: no code of its own
            return Failure(2, status["error"])
        return Failure(1, status["error"], status.get("exit_code"))
    return Failure(1, f"exited with code {code}: {p.last_log_line()}")


def _drop_failed_optional(
    processes: list[PartyProcess], spec: Spec, view: View, dropped: dict[str, str]
) -> None:
    """Stop and record every optional party that failed; the run goes on."""
    for p in processes:
        if not _optional(p.party) or p.party.name in dropped:
            continue
        failure = _failure(p, spec)
        if failure is None:
            continue
        _stop_all([p])
        dropped[p.party.name] = failure.cause
        view(f"optional party {p.party.name} dropped out ({failure.cause}); the run goes on")


def _required(processes: list[PartyProcess]) -> list[PartyProcess]:
    return [p for p in processes if not _optional(p.party)]


def _first_failure(processes: list[PartyProcess], spec: Spec) -> PartyProcess | None:
    return next((p for p in _required(processes) if _failure(p, spec) is not None), None)


def _root_cause(processes: list[PartyProcess], spec: Spec) -> tuple[PartyProcess, Failure]:
    failed = [(f, p) for p in _required(processes) if (f := _failure(p, spec)) is not None]
    failure, party = min(failed, key=lambda item: item[0].priority)
    return party, failure


def _show_progress(
    processes: list[PartyProcess], seen: dict[str, str | None], started: float, view: View
) -> None:
    """Print a line when every required party has reached a new stage (concise)."""
    required = [p for p in processes if not _lingers(p.party)]
    messages = {p.reader.progress() for p in required}
    if len(messages) != 1:
        return
    (message,) = messages
    if message and message != seen.get("all"):
        seen["all"] = message
        view(f"[{time.monotonic() - started:6.1f}s] all parties: {message}{_bar(message)}")


def _bar(message: str) -> str:
    """A progress bar for messages like 'epoch 2/5'."""
    match = re.search(r"(\d+)/(\d+)", message)
    if match is None:
        return ""
    return "  " + progress_bar(int(match.group(1)), int(match.group(2)))


def progress_bar(done: int, total: int, width: int = 24) -> str:
    """``[#####...]``: the fraction ``done / total`` as a bar of ``width`` cells."""
    filled = round(width * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def _stop_all(processes: list[PartyProcess]) -> None:
    """Stop every process still running: TERM (and CONT for stopped ones), then KILL."""
    alive = [p for p in processes if p.proc.poll() is None]
    for p in alive:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            _signal_group(p, sig)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(p.proc.poll() is None for p in alive):
        time.sleep(POLL_S)
    for p in alive:
        if p.proc.poll() is None:
            _signal_group(p, signal.SIGKILL)
        p.proc.wait()


def _signal_group(p: PartyProcess, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.proc.pid, sig)
