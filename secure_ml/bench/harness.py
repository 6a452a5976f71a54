"""``secure-ml bench``: every task under every protocol, side by side.

Protocols today: plaintext PyTorch (in this process, one thread), secure_ml's
MPC with 2 and 3 parties and the TTP dealer (``secure_ml.run_protocol``), and
raw CrypTen with the same parties (``raw_crypten``). Each (task, protocol) runs
``repeats`` times; a record keeps the median wall time and its spread, bytes
(total and per party), rounds, peak memory, accuracy and the error against
plaintext. ``ratio_to_raw_crypten`` divides our median by raw CrypTen's from
the same command. Wall time is the training (or prediction) phase only, for
every protocol alike; setup and process start are excluded.

Logistic regression has two raw baselines: ``raw_crypten`` as CrypTen's
tutorials write it (``crypten.nn``, autograd through the loss on every step),
and ``raw_crypten_closed_form``, plain CrypTen tensors with the algorithm
secure_ml uses (gradient ``X^T (sigmoid(Xw) - y) / B``, loss opened once per
epoch). ``ratio_to_raw_crypten_closed_form`` is what secure_ml's engine alone
buys; ``ratio_to_raw_crypten`` adds what the algorithm buys.

Ablations show what each ``[mpc]`` optimisation buys on the headline task:
``secure_ml ablation:none`` runs with every switch off (the before) and
``secure_ml ablation:-X`` with every switch on except ``X``; the plain
``secure_ml`` record is all on. ``ratio_to_all_on`` divides an ablation's
median by the all-on record's from the same command.

The channel's cost: ``secure_ml encrypted`` runs the headline task with every
link sealed (``[transport] encryption = "on"``, AES-256-GCM; keys made for
every process in the run's scratch folder), where a local run is otherwise
plain. ``ratio_to_plain_channel`` divides its median by the plain
``secure_ml`` record's from the same command; the two are measured together,
their repeats interleaved (plain, encrypted, encrypted, plain, ...) so drift in
the machine's load falls on both. The handshake is setup, outside the wall time.

What the DP collusion threshold costs in utility: task ``dp_stats_breast_cancer``
(``dp.stats``: mean, variance and histogram of three columns, epsilon = 1,
delta = 1e-5) always runs with 3 compute parties and the TTP dealer, whatever
the suite's ``parties``. ``secure_ml dp:t=T`` runs it with ``[dp]
collusion_threshold = T`` (T = 1, 2); its ``plaintext`` record is central DP,
one trusted curator adding the calibrated noise once (no MPC). Their wall time
is the ``stats`` phase (share, compute, release) or the curator's computation.
Each adds, per release in ``privacy.per_query`` order (``noise_releases``):
``noise_sigma_accounted`` (the sigma the accountant calibrated: what any T
parties cannot remove) and ``noise_sigma_total`` (all the noise in the released
value, sigma sqrt(n / (n - T))); ``noise_ratio_to_central`` = total / accounted
(1 for the curator); ``collusion_threshold``; the observed errors of this one
run, ``mean_error_rel_width`` (mean over columns of |released mean - exact
clamped mean| / column width; also ``error_vs_plain``) and
``histogram_error_rel_rows`` (mean over bins of |released count - exact| /
rows). ``accuracy`` is None. One run's errors are one noise draw: the sigmas
are the expected cost, the errors a sample of it.

What DP-SGD on shares costs in time: task ``dp_logreg_breast_cancer`` is the
headline logistic regression (same schedule and seed) with ``[dp]`` epsilon =
3, delta = 1e-5, max_grad_norm = 1 (``dp_sgd_rows``). ``secure_ml`` trains it
with DP-SGD on shares; ``secure_ml no-dp`` is the same spec without ``[dp]``,
measured together with it (repeats interleaved, as for the encrypted
channel); its ``plaintext`` record is Opacus DP-SGD (``baseline = "opacus"``,
``opacus_reference``). The DP record's ``ratio_to_non_dp`` divides its median by
the no-dp one's, with ``bytes_ratio_to_non_dp`` and ``rounds_ratio_to_non_dp``
beside it; it carries ``epsilon``, ``noise_multiplier``,
``noise_multiplier_total``, ``steps`` and ``sample_rate`` from its privacy
block, and ``error_vs_plain`` = |accuracy - opacus_accuracy| of the same run.

HE inference beside MPC inference: task ``he_infer_digits_mlp`` (``he_rows``)
trains a 64-32-10 square MLP once in plaintext and predicts on the digits test
split with ``he.infer batched`` (one CKKS ciphertext per input feature),
``he.infer per_sample`` (one per sample, ``Settings.he_samples`` rows),
``tenseal naive`` (TenSEAL's tutorial evaluation, one sample per ciphertext, in
this process without transport, measured together with the batched run and with
its CKKS parameters) and ``secure_ml`` (``mpc.infer``, 2 parties and the TTP
dealer), whatever the suite's ``parties``; ``ckks batched full slots`` is the
batched evaluation in this process on N/2 rows (the test split repeated), under
the naive run's conditions. The batched records'
``throughput_ratio_to_naive`` is their samples per second over the naive one's.
"""

from __future__ import annotations

import functools
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from secure_ml.bench.names import (
    ABLATION_PREFIX,
    CLOSED_FORM,
    DP_ERROR,
    DP_PREFIX,
    ENCRYPTED,
    HE_BATCHED,
    HE_FULL,
    HE_NAIVE,
    HE_PER_SAMPLE,
    HE_TASK,
    NO_DP,
    NON_DP_RATIO,
    PLAIN_CHANNEL_RATIO,
    RAW_RATIOS,
)
from secure_ml.bench.report import write_outputs
from secure_ml.bench.tasks import TASKS, Settings, Task
from secure_ml.launch.local import progress_bar
from secure_ml.spec import MPCSpec, spec_from_dict
from secure_ml.versions import versions

View = Callable[[str], None]
Runner = Callable[..., dict[str, Any]]
Step = tuple[str, str, int, Settings]

#: [mpc] switches that keep results right rather than make runs fast: ablations
#: (and tests' "all off") leave them on
CORRECTNESS_SWITCHES = ("exact_truncation",)
#: the [mpc] switches an ablation turns off: every other boolean of MPCSpec
OPTIMISATIONS = tuple(
    f.name
    for f in fields(MPCSpec)
    if f.type in (bool, "bool") and f.name not in CORRECTNESS_SWITCHES
)
#: the task the ablations (and the encrypted channel) run on: the headline,
#: where a reader looks first
ABLATION_TASK = "logreg_breast_cancer"
#: what the encrypted variant changes: channels sealed even on loopback
ENCRYPTED_TRANSPORT = {"encryption": "on"}
#: the phase in result["timings"] that is a task kind's wall time
PHASES = {"train": "train", "infer": "predict", "release": "stats"}
#: variant -> the step just before it that it is measured together with
COMPANIONS = {ENCRYPTED: "secure_ml", NO_DP: "secure_ml", HE_NAIVE: HE_BATCHED,
              HE_FULL: HE_NAIVE}  # fmt: skip
#: HE runners, by protocol name (he_rows)
HE_MODES = {HE_BATCHED: "batched", HE_PER_SAMPLE: "per_sample"}


@dataclass(frozen=True)
class Suite:
    name: str
    settings: Settings
    tasks: tuple[str, ...]
    parties: tuple[int, ...] = (2, 3)
    repeats: int = 1
    sweeps: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: per-task changes to ``settings`` (e.g. fewer epochs for a slow task)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ablation variants on ABLATION_TASK: "none" (all off) or "-X" (all on but X)
    ablations: tuple[str, ...] = ()

    def settings_for(self, task: str) -> Settings:
        return replace(self.settings, **self.overrides.get(task, {}))


SUITES = {
    # quick runs in CI: 2 parties, and only the before (all off) beside the after (all on)
    "quick": Suite(
        "quick",
        Settings(epochs=1, hidden=(16,), he_samples=3),
        ("logreg_breast_cancer", "dp_stats_breast_cancer", "dp_logreg_breast_cancer", HE_TASK),
        parties=(2,),
        ablations=("none",),
    ),
    "full": Suite(
        "full",
        Settings(epochs=5, hidden=(32,)),
        (
            "logreg_breast_cancer",
            "digits_mlp_train",
            "digits_mlp_infer",
            "resnet18_infer",
            "dp_stats_breast_cancer",
            "dp_logreg_breast_cancer",
            HE_TASK,
        ),
        repeats=2,
        sweeps={"parties": (2, 3, 4, 5), "batch_size": (32, 64, 128), "hidden": (16, 32, 64)},
        # 5 epochs of the MLP under raw CrypTen with 3 parties take ~5 minutes here
        overrides={"digits_mlp_train": {"epochs": 2}, "digits_mlp_infer": {"epochs": 2}},
        ablations=("none", *(f"-{name}" for name in OPTIMISATIONS)),
    ),
}


def ablation_switches(protocol: str) -> dict[str, bool] | None:
    """The [mpc] switches an ablation protocol name stands for; None if not an ablation."""
    if not protocol.startswith(ABLATION_PREFIX):
        return None
    variant = protocol.removeprefix(ABLATION_PREFIX)
    if variant == "none":
        return {name: False for name in OPTIMISATIONS}
    off = variant.removeprefix("-")
    if not variant.startswith("-") or off not in OPTIMISATIONS:
        choices = ", ".join(["none", *(f"-{name}" for name in OPTIMISATIONS)])
        raise ValueError(f"{protocol!r}: unknown ablation {variant!r}; use one of {choices}")
    return {name: name != off for name in OPTIMISATIONS}


def dp_threshold(protocol: str) -> int | None:
    """The collusion threshold a "secure_ml dp:t=T" protocol stands for; None otherwise."""
    if not protocol.startswith(DP_PREFIX):
        return None
    return int(protocol.removeprefix(DP_PREFIX))


def secure_ml_run(
    task: Task,
    settings: Settings,
    parties: int,
    scratch: Path,
    *,
    mpc: Mapping[str, Any] | None = None,
    transport: Mapping[str, Any] | None = None,
    dp: Mapping[str, Any] | None = None,
    no_dp: bool = False,
) -> dict[str, Any]:
    """One secure_ml run; ``mpc``, ``transport`` and ``dp`` override keys of those spec tables.

    With encryption on, every process's key pair is made in ``scratch/keys``
    (never in the repository) and the spec points there. ``no_dp`` removes
    the ``[dp]`` table (a DP-SGD task's non-DP twin).
    """
    from secure_ml.api import run_protocol
    from secure_ml.bench import dp_sgd_rows

    raw = task.make_spec(parties, settings, scratch)
    if no_dp:
        raw = dp_sgd_rows.without_dp(raw)
    if mpc:
        raw["mpc"] = {**raw.get("mpc", {}), **mpc}
    if dp:
        raw["dp"] = {**raw.get("dp", {}), **dp}
    if transport:
        raw["transport"] = {**raw.get("transport", {}), **transport}
        if transport.get("encryption") == "on":
            raw["transport"]["keys"] = str(_make_keys(raw, scratch / "keys"))
    spec = spec_from_dict(raw)
    result = run_protocol(spec, out=scratch / "run")
    metrics = result["metrics"]
    measured = {
        "wall_s": result["timings"][PHASES[task.kind]],
        "bytes": result["comm"]["bytes"],
        "bytes_per_party": [p["bytes"] for p in result["comm"]["per_party"]],
        "rounds": result["comm"]["rounds"],
        "peak_rss_mb": max(result["peak_rss_mb"].values()),
        "accuracy": metrics.get("accuracy") if task.metric == "accuracy" else None,
        "max_abs_error": metrics.get("max_abs_error"),
        # the effective table (defaults included), so a record says what it measured
        "mpc": asdict(spec.mpc),
        "channel": result["transport"]["channel"],  # "encrypted" or "plain"
        "dealer": spec.protocol.dealer,
    }
    if task.kind == "release":
        from secure_ml.bench.dp_rows import from_result

        measured.update(from_result(result))
    if task.dp_sgd:
        measured.update(dp_sgd_rows.from_result(result))
    if task.he:
        from secure_ml.bench.he_rows import mpc_fields

        measured.update(mpc_fields(result, measured["wall_s"]))
    return measured


def _make_keys(raw: dict[str, Any], folder: Path) -> Path:
    """A key pair for every process of the spec ``raw`` (the dealer too) in ``folder``."""
    from secure_ml.keys import init_keys

    for party in spec_from_dict(raw).roster.processes:
        init_keys(party.name, folder)
    return folder


def raw_run(
    task: Task, settings: Settings, parties: int, scratch: Path, *, closed_form: bool = False
) -> dict[str, Any]:
    from secure_ml.bench.raw_crypten import run_baseline

    baseline = task.raw_closed_form if closed_form else task.raw_baseline
    out = run_baseline(baseline, parties=parties, dealer="ttp", config=task.raw_config(settings))
    measured = {k: v for k, v in out.items() if k != "result"} | {"dealer": "ttp"}
    if task.metric == "max_abs_error":
        return {**measured, "accuracy": None, "max_abs_error": out["result"]}
    return {**measured, "accuracy": out["result"]}


def plaintext_run(task: Task, settings: Settings, parties: int, scratch: Path) -> dict[str, Any]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like one party
    try:
        return {**task.plaintext(settings, scratch), "bytes": 0, "rounds": 0}
    finally:
        torch.set_num_threads(threads)


def _measure_together(
    runners: list[Callable[..., dict[str, Any]]],
    task: Task,
    settings: Settings,
    parties: int,
    repeats: int,
) -> list[dict[str, Any]]:
    """Each runner's summary; repeats interleaved, every other round in reverse order.

    Runners A and B run A B, B A, A B, ...: a drift in the machine's load
    falls on both alike, so the ratio of their medians is fair.
    """
    runs: list[list[dict[str, Any]]] = [[] for _ in runners]
    for repeat in range(repeats):
        order = list(enumerate(runners))
        for i, runner in order if repeat % 2 == 0 else reversed(order):
            with tempfile.TemporaryDirectory(prefix="secure-ml-bench-") as scratch:
                runs[i].append(runner(task, settings, parties, Path(scratch)))
    return [_summary(r, repeats) for r in runs]


def _summary(runs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    return {**runs[-1], "wall_s": statistics.median(walls), "wall_min_s": min(walls),
            "wall_max_s": max(walls), "repeats": repeats}  # fmt: skip


def plan(suite: Suite) -> list[Step]:
    """Every (task, protocol, parties, settings) the suite runs, in order."""
    steps: list[Step] = []
    for name in suite.tasks:
        task, settings = TASKS[name], suite.settings_for(name)
        steps.append((name, "plaintext", 1, settings))
        if task.kind == "release":  # DP: the thresholds replace raw CrypTen and plain runs
            for n in (task.parties,) if task.parties else suite.parties:
                steps += _threshold_steps(name, n, settings)
            continue
        if task.he:  # HE batched + naive, HE per sample, mpc.infer with 2 parties
            from secure_ml.bench.he_rows import steps as he_steps

            steps += he_steps(name, settings)
            continue
        for n in suite.parties:
            if task.raw_baseline is not None:
                steps.append((name, "raw_crypten", n, settings))
            if task.raw_closed_form is not None:
                steps.append((name, CLOSED_FORM, n, settings))
            steps.append((name, "secure_ml", n, settings))
            if name == ABLATION_TASK:  # right after, measured with it (``together``)
                steps.append((name, ENCRYPTED, n, settings))
            if task.dp_sgd:  # the same run without [dp], measured with it too
                steps.append((name, NO_DP, n, settings))
    if ABLATION_TASK in suite.tasks:
        settings = suite.settings_for(ABLATION_TASK)  # the all-on record's, so ratios hold
        for n in suite.parties:
            for variant in suite.ablations:
                steps.append((ABLATION_TASK, f"{ABLATION_PREFIX}{variant}", n, settings))
    for variable, values in suite.sweeps.items():
        for value in values:
            task = "digits_mlp_train" if variable == "hidden" else "logreg_breast_cancer"
            settings = suite.settings_for(task)
            if variable == "batch_size":
                settings = replace(settings, batch_size=value)
            if variable == "hidden":
                settings = replace(settings, hidden=(value,))
            parties = value if variable == "parties" else 2
            steps.append((task, f"secure_ml sweep:{variable}={value}", parties, settings))
    return steps


def _threshold_steps(name: str, parties: int, settings: Settings) -> list[Step]:
    """A DP task at collusion thresholds 1..n-1.

    t = 0 is left out: it would trust the receiver, itself a compute party, not
    to subtract its own noise.
    """
    return [(name, f"{DP_PREFIX}{t}", parties, settings) for t in range(1, parties)]


def together(steps: list[Step]) -> list[list[Step]]:
    """``steps`` grouped for measuring: an encrypted (or no-dp) step joins the plain one
    before it, the naive HE baseline the batched HE step before it.

    A group's repeats are interleaved (``_measure_together``); every other
    step is a group of its own.
    """
    groups: list[list[Step]] = []
    for step in steps:
        before = groups[-1][-1] if groups else None
        if (
            before is not None
            and COMPANIONS.get(step[1]) == before[1]
            and (before[0], before[3]) == (step[0], step[3])
            # the naive baseline runs in one process beside the 2-party batched run
            and (before[2] == step[2] or step[1] in (HE_NAIVE, HE_FULL))
        ):
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


RUNNERS = {
    "plaintext": plaintext_run,
    "raw_crypten": raw_run,
    CLOSED_FORM: functools.partial(raw_run, closed_form=True),
    "secure_ml": secure_ml_run,
}


def _he_runner(protocol: str) -> Runner:
    from secure_ml.bench import he_rows

    if protocol == HE_NAIVE:
        return he_rows.naive_run
    if protocol == HE_FULL:
        return he_rows.full_slots_run
    return functools.partial(he_rows.he_run, mode=HE_MODES[protocol])


def runner_for(protocol: str) -> Runner:
    """The runner for ``protocol``, with an ablation's [mpc] switches (or the
    encrypted variant's [transport]) bound to it."""
    if protocol in (*HE_MODES, HE_NAIVE, HE_FULL):
        return _he_runner(protocol)
    runner = RUNNERS[protocol.split()[0]]
    if protocol == ENCRYPTED:
        return functools.partial(runner, transport=ENCRYPTED_TRANSPORT)
    if protocol == NO_DP:
        return functools.partial(runner, no_dp=True)
    threshold = dp_threshold(protocol)
    if threshold is not None:
        return functools.partial(runner, dp={"collusion_threshold": threshold})
    switches = ablation_switches(protocol)
    return runner if switches is None else functools.partial(runner, mpc=switches)


def run_suite(
    suite: Suite, *, out: Path, view: View | None = None, peers: Path | None = None
) -> list[dict[str, Any]]:
    """Run ``suite``; write results.json, report.md and plots into ``out``.

    ``peers``: a folder of records measured by other frameworks in their own
    environments (``make bench-peers``), added beside ours for the same task.
    """
    view = view or (lambda _line: None)
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(suite)
    records: list[dict[str, Any]] = []
    for group in together(steps):
        task_name, _, parties, settings = group[0]
        protocols = [protocol for _, protocol, _, _ in group]
        named = " + ".join(protocols)
        view(f"{_bar(len(records), len(steps))} {task_name} / {named} / {parties} parties")
        repeats = 1 if "sweep" in protocols[0] else suite.repeats
        runners = [runner_for(protocol) for protocol in protocols]
        measured = _measure_together(runners, TASKS[task_name], settings, parties, repeats)
        for (_, protocol, n, _), summary in zip(group, measured, strict=True):
            records.append({"task": task_name, "protocol": protocol, "parties": n,
                            "settings": settings.__dict__, **summary})  # fmt: skip
    view(f"{_bar(len(steps), len(steps))} done")
    records += peer_records(peers, suite) if peers is not None else []
    finish(records)
    write_outputs(records, out, suite=suite.name)
    return records


def peer_records(folder: Path, suite: Suite) -> list[dict[str, Any]]:
    """Peer records for this suite's tasks (a missing folder is an error, not a skip)."""
    from secure_ml.errors import DataError

    if not folder.is_dir():
        raise DataError(f"--peers {folder}: no such folder; run `make bench-peers` first")
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [
        {"peak_rss_mb": None, "bytes_per_party": None, **r}
        for r in records
        if r["task"] in suite.tasks
    ]


def finish(records: list[dict[str, Any]]) -> None:
    """Add error against plaintext, ratios to raw CrypTen, to all-on, to the plain
    channel and to the non-DP run, the dealer, versions, machine."""
    plain = {r["task"]: r for r in records if r["protocol"] == "plaintext"}
    machine = {"platform": platform.platform(), "python": sys.version.split()[0],
               "cpus": _cpus()}  # fmt: skip
    for r in records:
        reference = _reference_accuracy(r, plain)
        if r.get(DP_ERROR) is not None:
            r["error_vs_plain"] = r[DP_ERROR]  # released means against the exact ones
        elif r.get("max_abs_error") is not None:
            r["error_vs_plain"] = r["max_abs_error"]  # logits against PyTorch's
        elif r["accuracy"] is not None and reference is not None:
            r["error_vs_plain"] = abs(r["accuracy"] - reference)
        else:
            r["error_vs_plain"] = None
        r.setdefault("mpc", None)  # only secure_ml runs have [mpc] switches
        r.setdefault("channel", None)  # nor channels of their own
        r.setdefault("dealer", None)  # plaintext has none; peers say so themselves
        r["versions"] = versions()
        r["machine"] = machine
    for protocol, field_name in RAW_RATIOS.items():
        _add_ratio_to_raw(records, protocol, field_name)
    _add_ratio_to_all_on(records)
    _add_ratio_to_plain_channel(records)
    _add_ratio_to_non_dp(records)
    from secure_ml.bench.he_rows import add_throughput_ratio

    add_throughput_ratio(records)


def _reference_accuracy(r: dict[str, Any], plain: dict[str, dict[str, Any]]) -> float | None:
    """What ``r``'s accuracy is compared with: Opacus's for a DP-SGD run, its own run's
    plaintext accuracy for a DP-SGD task's no-dp twin, else the task's plaintext record."""
    for key in ("opacus_accuracy", "plaintext_accuracy"):
        if key in r:
            return r[key]
    return plain.get(r["task"], {}).get("accuracy")


def _add_ratio_to_raw(records: list[dict[str, Any]], protocol: str, field_name: str) -> None:
    """``field_name``: a secure_ml run's wall time / the raw baseline ``protocol``'s.

    Also ``bytes_<field_name>``. Only runs of the same task, parties and
    settings compare; otherwise the field is None.
    """
    raw = {(r["task"], r["parties"]): r for r in records if r["protocol"] == protocol}
    for r in records:
        baseline = raw.get((r["task"], r["parties"]))
        same_settings = baseline is not None and baseline["settings"] == r["settings"]
        if r["protocol"].startswith("secure_ml") and same_settings:
            r[field_name] = r["wall_s"] / baseline["wall_s"]
            r[f"bytes_{field_name}"] = r["bytes"] / baseline["bytes"]
        else:
            r[field_name] = None


def _add_ratio_to_all_on(records: list[dict[str, Any]]) -> None:
    """``ratio_to_all_on``: an ablation's (or all-on's own) wall time / all-on's.

    Only the ablation family gets one: other protocols already compare against
    raw CrypTen, and a sweep changes more than the switches.
    """
    all_on = {(r["task"], r["parties"]): r for r in records if r["protocol"] == "secure_ml"}
    for r in records:
        base = all_on.get((r["task"], r["parties"]))
        in_family = r["protocol"] == "secure_ml" or r["protocol"].startswith(ABLATION_PREFIX)
        comparable = in_family and base is not None and base["settings"] == r["settings"]
        r["ratio_to_all_on"] = r["wall_s"] / base["wall_s"] if comparable else None


def _add_ratio_to_plain_channel(records: list[dict[str, Any]]) -> None:
    """``ratio_to_plain_channel``: the encrypted run's wall time / the plain secure_ml run's.

    Same command, task, parties and settings; every other record gets None.
    """
    plain = {(r["task"], r["parties"]): r for r in records if r["protocol"] == "secure_ml"}
    for r in records:
        base = plain.get((r["task"], r["parties"]))
        comparable = (
            r["protocol"] == ENCRYPTED and base is not None and base["settings"] == r["settings"]
        )
        r[PLAIN_CHANNEL_RATIO] = r["wall_s"] / base["wall_s"] if comparable else None


def _add_ratio_to_non_dp(records: list[dict[str, Any]]) -> None:
    """``ratio_to_non_dp`` (and ``bytes_``, ``rounds_``): a DP-SGD run's / its no-dp twin's.

    Only the ``secure_ml`` record of a task with a no-dp run of the same
    parties and settings gets them; every other record gets None.
    """
    twins = {(r["task"], r["parties"]): r for r in records if r["protocol"] == NO_DP}
    for r in records:
        base = twins.get((r["task"], r["parties"]))
        comparable = (
            r["protocol"] == "secure_ml" and base is not None and base["settings"] == r["settings"]
        )
        for key in ("wall_s", "bytes", "rounds"):
            name = NON_DP_RATIO if key == "wall_s" else f"{key}_{NON_DP_RATIO}"
            r[name] = r[key] / base[key] if comparable else None


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _bar(done: int, total: int) -> str:
    return f"{progress_bar(done, total)} {done}/{total}"
