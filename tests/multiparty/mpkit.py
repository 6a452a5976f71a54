"""Multiparty harness: one test body under 2PC, 3PC and TTP, real processes.

``world`` is parametrised like CrypTen's test mixins: ``2pc`` is two parties
with the trusted-first-party dealer (explicitly marked insecure, as tests may),
``3pc`` three parties with the trusted third party as its own process (the
quickstart's setting), and ``ttp`` two parties with the trusted third party.
``run_parties`` runs a function on every party and, on failure, puts every
party's traceback and log tail into the assertion message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import secure_ml
from secure_ml.bench.harness import OPTIMISATIONS
from secure_ml.errors import SecureMLError

WORLDS = {
    "2pc": {"parties": 2, "dealer": "tfp"},
    "3pc": {"parties": 3, "dealer": "ttp"},
    "ttp": {"parties": 2, "dealer": "ttp"},
}
LAUNCH_TIMEOUT_S = 120
#: every [mpc] optimisation off: correctness tests run with and without them
ALL_OFF = {name: False for name in OPTIMISATIONS}


def protocol_for(world: str, name: str = "python", seed: int = 0) -> dict[str, Any]:
    """The [protocol] table of ``world`` (TFP worlds are declared insecure, as tests may)."""
    protocol = {"name": name, "dealer": WORLDS[world]["dealer"], "seed": seed}
    if protocol["dealer"] == "tfp":
        protocol["insecure_dealer"] = True
    return protocol


def make_spec(world: str, *, receivers: tuple[int, ...] = (), **sections: Any) -> dict:
    """A spec dict for ``world`` with parties p0, p1, (p2); extra sections merged in."""
    config = WORLDS[world]
    protocol = protocol_for(world)
    parties = [
        {"name": f"p{i}", "roles": ["data_owner", *(["receiver"] if i in receivers else [])]}
        for i in range(config["parties"])
    ]
    spec: dict[str, Any] = {"protocol": protocol, "party": parties, **sections}
    spec.setdefault("launch", {"collective_timeout": 60, "heartbeat_timeout": 20})
    return spec


def party_reports(out: Path) -> str:
    """Every party's status (with traceback) and log tail, for failure messages."""
    lines = []
    for status_file in sorted((out / ".control").glob("*.status.json")):
        status = json.loads(status_file.read_text())
        if not status.get("ok"):
            lines.append(
                f"--- {status_file.name}: {status.get('error')}\n{status.get('traceback')}"
            )
    for log in sorted((out / "logs").glob("*.log")):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        lines.append(f"--- {log.name} (tail)\n{tail}")
    return "\n".join(lines)


def run_parties(fn: Any, spec: dict, out: Path, **kwargs: Any) -> dict[str, Any]:
    """``secure_ml.run`` with every party's traceback in the failure message."""
    try:
        return secure_ml.run(fn, spec, out=out, timeout=LAUNCH_TIMEOUT_S, **kwargs)
    except SecureMLError as error:
        raise AssertionError(f"{error}\n{party_reports(out)}") from error
