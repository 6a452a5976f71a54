"""One party process: the same entry for local runs and for one host of many.

``run_party`` sets up logging and the heartbeat, opens the ``Session``, runs
the job (a registered protocol, a user function, or the dealer's triple
service), writes ``result-<party>.json`` into the party's own output folder and
reports its status to the launcher. It returns the process exit code.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_ml.errors import PeerLost, exit_code_for
from secure_ml.launch.control import PartyControl
from secure_ml.spec import Spec
from secure_ml.transport import notices

log = logging.getLogger("secure_ml.party")

_TRANSPORT_HINTS = ("connection closed", "connection reset", "broken pipe", "timed out", "gloo")


@dataclass(frozen=True)
class Job:
    """What a party runs: the spec's protocol, or a pickled user function."""

    function_file: Path | None = None


def configure_logging(party: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {party} %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run_party(
    spec: Spec,
    *,
    rank: int,
    rendezvous: str,
    out_dir: Path,
    control_dir: Path,
    job: Job,
    exit_if_orphaned: bool = False,
) -> int:
    """Run one party to completion; return its exit code (0 on success)."""
    started = time.perf_counter()
    party = spec.roster.by_rank(rank)
    configure_logging(party.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    control = PartyControl(control_dir, party.name)
    control.start_heartbeat(exit_if_orphaned=exit_if_orphaned)
    reporting = threading.Lock()  # one failure report, from whichever thread comes first

    def fail(error: BaseException) -> int:
        code = exit_code_for(error)
        if isinstance(error, PeerLost):  # before our links close: peers will ask why
            notices.leave(rank, error.lost_first)
        trace = "".join(traceback.format_exception(error))  # also from the watch thread
        log.error("%s: %s\n%s", type(error).__name__, error, trace)
        control.finish(
            {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "kind": _kind(error),
                "exit_code": code,
                "traceback": trace,
            }
        )
        if isinstance(error, PeerLost):
            notices.linger_as_store_host(rank, rendezvous)
        return code

    def lost_while_blocked(error: Exception) -> None:
        # the dealer's watch thread: the main thread is stuck in gloo, so end here
        if reporting.acquire(blocking=False):
            sys.stderr.flush()
            os._exit(fail(error))

    try:
        record = _run(spec, rank, rendezvous, out_dir, control, job, lost_while_blocked)
        record["timings"]["total"] = time.perf_counter() - started
        _write_json(out_dir / f"result-{party.name}.json", record)
        control.finish({"ok": True})
        return 0
    except BaseException as error:  # report everything, even KeyboardInterrupt
        reporting.acquire()
        return fail(error)


def _run(
    spec: Spec,
    rank: int,
    rendezvous: str,
    out_dir: Path,
    control: PartyControl,
    job: Job,
    on_lost: Callable[[Exception], None],
) -> dict[str, Any]:
    from secure_ml.session import Session

    function = _load_function(job.function_file) if job.function_file else None
    session = Session(
        spec,
        rank=rank,
        rendezvous=rendezvous,
        out_dir=out_dir,
        progress=control.progress,
        on_lost=on_lost,
    )
    output: dict[str, Any] = {"metrics": {}, "artifacts": {}, "timings": {}, "privacy": None}
    with session:
        control.progress("connected")
        compute_started = time.perf_counter()
        if session.is_dealer:
            from secure_ml.sharing import dealer

            output["metrics"]["dealer_requests"] = dealer.serve()
        elif function is not None:
            value = function(session)
            _write_return(control, value)
        else:
            from secure_ml.protocols import get_protocol

            result = get_protocol(spec.protocol.name).run(session)
            output = {
                "metrics": result.metrics,
                "artifacts": result.artifacts,
                "timings": result.timings,
                "privacy": result.privacy,
            }
        compute = time.perf_counter() - compute_started
        comm = session.comm_stats()
    control.progress("done")
    return _party_record(spec, session, output, comm, compute)


def _party_record(
    spec: Spec, session: Any, output: dict[str, Any], comm: dict[str, Any], compute: float
) -> dict[str, Any]:
    from secure_ml.versions import versions

    return {
        "protocol": spec.protocol.name,
        "spec_hash": spec.hash,
        "party": session.party.describe(),
        "metrics": output["metrics"],
        "artifacts": {k: str(v) for k, v in output["artifacts"].items()},
        "comm": comm,
        "timings": {"setup": session.setup_seconds, "compute": compute, **output["timings"]},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "revealed_to": session.revealed,
        "privacy": output["privacy"],
        "channel": session.channel,
        "versions": versions(),
    }


def _kind(error: BaseException) -> str:
    """'echo' for errors that follow from a peer's failure, else 'error'."""
    name = type(error).__name__
    text = str(error).lower()
    if getattr(error, "echo", False) or name.startswith("Dist"):
        return "echo"
    if any(hint in text for hint in _TRANSPORT_HINTS):
        return "echo"
    return "error"


def _load_function(path: Path) -> Any:
    import cloudpickle

    with open(path, "rb") as f:
        return cloudpickle.load(f)


def _write_return(control: PartyControl, value: Any) -> None:
    import cloudpickle

    with open(control.path("return.pkl"), "wb") as f:
        cloudpickle.dump(value, f)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
