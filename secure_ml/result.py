"""Result: merge what each party reported into ``DIR/result.json``.

Fields (DESIGN.md §4): ``protocol``, ``spec_hash``, ``parties`` (name, rank,
roles; the dealer included), ``metrics`` (each party contributes what it
learned; the launcher adds the plaintext baseline), ``privacy``, ``comm``
(``bytes`` = all bytes sent by the compute parties and the dealer, ``rounds`` =
the largest round count of any compute party, ``per_party``), ``timings``
(seconds: ``total``, ``setup``, ``compute``), ``transport`` (the codec, and
whether the links were ``encrypted`` or ``plain``), ``versions``, ``revealed_to``, and
``dropped`` (optional parties that failed, and why) when any did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from secure_ml.errors import PartyFailure
from secure_ml.launch.local import LaunchOutcome
from secure_ml.spec import Spec
from secure_ml.versions import versions


def party_records(spec: Spec, outcome: LaunchOutcome) -> list[dict[str, Any]]:
    """Each process's ``result-<party>.json``, in rank order (dropped parties left out)."""
    records = []
    for party in spec.roster.processes:
        if party.name in outcome.dropped:
            continue
        path = outcome.party_dirs[party.name] / f"result-{party.name}.json"
        if not path.is_file():
            raise PartyFailure(party.name, f"finished without writing {path}")
        records.append(json.loads(path.read_text()))
    return records


def merge_comm(records: list[dict[str, Any]]) -> dict[str, Any]:
    per_party = [
        {"name": r["party"]["name"], "bytes": r["comm"]["bytes"], "rounds": r["comm"]["rounds"]}
        for r in records
    ]
    compute = [r for r in records if "dealer" not in r["party"]["roles"]]
    return {
        "bytes": sum(p["bytes"] for p in per_party),
        "rounds": max((r["comm"]["rounds"] for r in compute), default=0),
        "per_party": per_party,
    }


def merge_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Union of the parties' metrics; the first party (in rank order) that knows one wins."""
    metrics: dict[str, Any] = {}
    for r in records:
        if "dealer" in r["party"]["roles"]:
            continue
        for key, value in r["metrics"].items():
            metrics.setdefault(key, value)
    return metrics


def merge_channel(records: list[dict[str, Any]]) -> str:
    """``encrypted`` or ``plain``: one handshake decides it for every link of a run."""
    channels = {r["channel"] for r in records}
    return channels.pop() if len(channels) == 1 else "mixed: " + ", ".join(sorted(channels))


def merge_timings(records: list[dict[str, Any]], total: float) -> dict[str, float]:
    """``total`` (launcher wall time), then each stage's slowest party."""
    timings = {"total": total}
    for r in records:
        for stage, seconds in r["timings"].items():
            if stage != "total" and seconds is not None:
                timings[stage] = max(timings.get(stage, 0.0), seconds)
    return timings


def merge_revealed(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    revealed: dict[str, list[str]] = {}
    for r in records:
        for name, receivers in r["revealed_to"].items():
            known = revealed.setdefault(name, [])
            known.extend(x for x in receivers if x not in known)
    return revealed


def assemble(
    spec: Spec,
    outcome: LaunchOutcome,
    *,
    plaintext_metrics: dict[str, Any] | None = None,
    privacy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the run's result from the party records and the launcher's own numbers."""
    records = party_records(spec, outcome)
    if privacy is None:  # the protocol's own account, as its compute parties wrote it
        privacy = next((r["privacy"] for r in records if r.get("privacy")), None)
    metrics = merge_metrics(records)
    for key, value in (plaintext_metrics or {}).items():
        metrics.setdefault(key, value)
    dropped = {"dropped": dict(outcome.dropped)} if outcome.dropped else {}
    return {
        "protocol": spec.protocol.name,
        "spec_hash": spec.hash,
        "parties": [p.describe() for p in spec.roster.processes],
        "metrics": metrics,
        "privacy": privacy,
        "comm": merge_comm(records),
        "transport": {"codec": spec.transport.codec, "channel": merge_channel(records)},
        "timings": merge_timings(records, outcome.wall_seconds),
        "peak_rss_mb": {r["party"]["name"]: r["peak_rss_mb"] for r in records},
        "versions": versions(),
        "revealed_to": merge_revealed(records),
        "artifacts": _publish_artifacts(records, outcome.out_dir),
        **dropped,
    }


def _publish_artifacts(records: list[dict[str, Any]], out_dir: Path) -> dict[str, str]:
    """Copy each artifact of the first party holding it to ``DIR/<file name>``."""
    published: dict[str, str] = {}
    for r in records:
        for name, path in r["artifacts"].items():
            if name in published:
                continue
            target = out_dir / Path(path).name
            shutil.copyfile(path, target)
            published[name] = f"{target.name} (from {r['party']['name']})"
    return published


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    path = Path(out_dir) / "result.json"
    tmp = path.with_name("result.json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(path)
    return path
