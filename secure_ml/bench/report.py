"""Bench outputs: results.json, report.md and PNG plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from secure_ml.bench.names import (
    ABLATION_PREFIX,
    CLOSED_FORM,
    ENCRYPTED,
    HE_RATIO,
    HE_TASK,
    NO_DP,
    NON_DP_RATIO,
    OPACUS,
    PLAIN_CHANNEL_RATIO,
    RAW_RATIOS,
)
from secure_ml.errors import DependencyError

CLOSED_FORM_RATIO = RAW_RATIOS[CLOSED_FORM]


def write_outputs(records: list[dict[str, Any]], out: Path, *, suite: str) -> None:
    (out / "results.json").write_text(json.dumps(records, indent=2, default=str))
    (out / "report.md").write_text(markdown(records, suite=suite))
    plot_costs(records, out / "cost.png")
    sweeps = sweep_series(records)
    if sweeps:
        plot_sweeps(sweeps, out / "scaling.png")


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def _mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 1e6


def _table_row(cells: list[Any]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _wall(r: dict[str, Any]) -> str:
    return f"{r['wall_s']:.3g} [{r['wall_min_s']:.3g}-{r['wall_max_s']:.3g}]"


def is_ablation(r: dict[str, Any]) -> bool:
    """An optimisation run ("secure_ml ablation:none" or ":-X"); plain "secure_ml" is all on."""
    return r["protocol"].startswith(ABLATION_PREFIX)


def is_dp_row(r: dict[str, Any]) -> bool:
    """A record of a DP release task (it carries noise scales instead of accuracy)."""
    return r.get("noise_ratio_to_central") is not None


def is_dp_sgd_row(r: dict[str, Any]) -> bool:
    """A record of a DP-SGD task: Opacus, DP-SGD on shares, or the same run without DP."""
    return (
        r.get("baseline") == OPACUS
        or r["protocol"] == NO_DP
        or r.get("noise_multiplier_total") is not None
    )


def is_he_row(r: dict[str, Any]) -> bool:
    """A record of the HE inference task (HE, its naive baseline, mpc.infer, plaintext)."""
    return r["task"] == HE_TASK


def _in_task_tables(r: dict[str, Any]) -> bool:
    # sweeps, ablations, DP and HE rows have their own sections; repeating them would bury
    # the headline
    return (
        "sweep" not in r["protocol"]
        and not is_ablation(r)
        and not is_dp_row(r)
        and not is_dp_sgd_row(r)
        and not is_he_row(r)
    )


def markdown(records: list[dict[str, Any]], *, suite: str) -> str:
    lines = [f"# secure_ml benchmark ({suite} suite)", ""]
    first = records[0] if records else {}
    lines += [f"Machine: {first.get('machine')}; versions: {first.get('versions')}.", ""]
    lines += ["Wall time is the training (or prediction) phase; ratio = ours / raw CrypTen "
              "from this same command. Two raw baselines where they exist: `raw_crypten` as "
              "CrypTen's tutorials write it (autograd through the loss), and "
              "`raw_crypten_closed_form` with our algorithm (closed-form gradient, loss once "
              "per epoch): the ratio to the closed form is what the engine alone buys.",
              f"`{ENCRYPTED}` is the same secure_ml run with every link between processes "
              "encrypted and authenticated (AES-256-GCM; a local run is otherwise plain): "
              "its ratio to plain channel (its wall time / plain `secure_ml`'s, repeats "
              "interleaved) is what the channel protection costs.",
              ""]  # fmt: skip
    for task in dict.fromkeys(r["task"] for r in records if _in_task_tables(r)):
        lines += [f"## {task}", "", "| protocol | parties | wall s (median [min-max]) | MB sent "
                  "| rounds | peak MB | accuracy | error vs plain | ratio to raw "
                  "| ratio to closed-form raw | ratio to plain channel |",
                  "|---" * 11 + "|"]  # fmt: skip
        for r in records:
            if r["task"] != task or not _in_task_tables(r):
                continue
            cells = [
                r["protocol"], r["parties"], _wall(r), _fmt(_mb(r["bytes"])), _fmt(r["rounds"]),
                _fmt(r.get("peak_rss_mb"), ".0f"), _fmt(r["accuracy"]),
                _fmt(r["error_vs_plain"]), _fmt(r["ratio_to_raw_crypten"]),
                _fmt(r.get(CLOSED_FORM_RATIO)), _fmt(r.get(PLAIN_CHANNEL_RATIO)),
            ]  # fmt: skip
            lines.append(_table_row(cells))
        lines.append("")
    lines += optimisation_tables(records)
    lines += dp_tables(records)
    lines += dp_sgd_tables(records)
    lines += he_tables(records)
    series = sweep_series(records)
    if series:
        lines += ["## Scaling", "", "| variable | values | wall s | MB sent | growth exponent "
                  "(time, bytes) |", "|---|---|---|---|---|"]  # fmt: skip
        for variable, points in series.items():
            xs, walls, sent = zip(*points, strict=True)
            values = ", ".join(f"{x:g}" for x in xs)
            times = ", ".join(f"{w:.3g}" for w in walls)
            megabytes = ", ".join(f"{b / 1e6:.3g}" for b in sent)
            exponents = f"{_fmt(growth_exponent(xs, walls))}, {_fmt(growth_exponent(xs, sent))}"
            lines.append(f"| {variable} | {values} | {times} | {megabytes} | {exponents} |")
        lines.append("")
    return "\n".join(lines)


def ablation_label(protocol: str) -> str | None:
    """The row name of an optimisation run: "all off", "all but X", "all on"; else None."""
    if protocol == "secure_ml":
        return "all on"
    if not protocol.startswith(ABLATION_PREFIX):
        return None
    variant = protocol.removeprefix(ABLATION_PREFIX)
    return "all off" if variant == "none" else f"all but {variant.removeprefix('-')}"


def ablation_groups(records: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(task, parties) -> rows all off, each all but X, all on; only where ablations ran."""
    ablated = {(r["task"], r["parties"]) for r in records if is_ablation(r)}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if (r["task"], r["parties"]) in ablated and ablation_label(r["protocol"]) is not None:
            groups[(r["task"], r["parties"])].append(r)
    # before first, after last, the single switches between in the harness's order
    rank = {"all off": 0, "all on": 2}
    return {
        key: sorted(rows, key=lambda r: rank.get(ablation_label(r["protocol"]), 1))
        for key, rows in sorted(groups.items())
    }


_OPTIMISATION_HEADER = (
    "| optimisations | wall s (median [min-max]) | rounds | MB sent | accuracy "
    "| ratio to raw CrypTen | ratio to closed-form raw | ratio to all on |"
)


def optimisation_tables(records: list[dict[str, Any]]) -> list[str]:
    """The "Optimisations (before/after)" section: one table per task and party count."""
    groups = ablation_groups(records)
    if not groups:
        return []
    lines = ["## Optimisations (before/after)", "",
             "Rows switch the spec's `[mpc]` optimisations on and off on the same task and "
             "settings; \"all off\" is the engine before them, \"all on\" the default.",
             "Read \"all but X\" as X alone switched off: its slowdown against all on "
             "(ratio to all on above 1) is what X buys.", ""]  # fmt: skip
    for (task, parties), rows in groups.items():
        lines += [f"### {task}, {parties} parties", "", _OPTIMISATION_HEADER, "|---" * 8 + "|"]
        for r in rows:
            cells = [
                ablation_label(r["protocol"]), _wall(r), _fmt(r["rounds"]),
                _fmt(_mb(r["bytes"])), _fmt(r["accuracy"]),
                _fmt(r.get("ratio_to_raw_crypten")), _fmt(r.get(CLOSED_FORM_RATIO)),
                _fmt(r.get("ratio_to_all_on")),
            ]  # fmt: skip
            lines.append(_table_row(cells))
        lines.append("")
    return lines


_DP_HEADER = (
    "| protocol | parties | collusion threshold t | accounted sigma | total sigma "
    "| ratio to central | mean error / width | histogram error / rows | wall s |"
)


def dp_tables(records: list[dict[str, Any]]) -> list[str]:
    """The DP section: accounted against total noise, per task, central DP first."""
    rows = [r for r in records if is_dp_row(r)]
    if not rows:
        return []
    lines = ["## DP statistics: the collusion threshold's cost", "",
             "Each compute party adds its own noise to its own share, so that no coalition "
             "of t parties knows the noise the other n - t added: the released value carries "
             "sqrt(n / (n - t)) times the accounted sigma (the one the privacy guarantee "
             "uses). `plaintext` is central DP: one trusted curator adds the accounted noise "
             "once. Sigmas are those of the first release; the errors are one run's noise "
             "draw (mean error: |released mean - exact clamped mean| / column width, averaged "
             "over columns).", ""]  # fmt: skip
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        lines += [f"### {task}: {mine[0]['noise_releases'][0]}", "", _DP_HEADER,
                  "|---" * 9 + "|"]  # fmt: skip
        for r in mine:
            cells = [
                r["protocol"], r["parties"], _fmt(r["collusion_threshold"]),
                _fmt(r["noise_sigma_accounted"][0], ".4g"), _fmt(r["noise_sigma_total"][0], ".4g"),
                _fmt(r["noise_ratio_to_central"]), _fmt(r["mean_error_rel_width"]),
                _fmt(r["histogram_error_rel_rows"]), _wall(r),
            ]  # fmt: skip
            lines.append(_table_row(cells))
        lines.append("")
    return lines


_DP_SGD_HEADER = (
    "| protocol | parties | wall s (median [min-max]) | MB sent | rounds | accuracy "
    "| Opacus accuracy | error vs plain | epsilon | sigma accounted | sigma total | steps "
    "| ratio to non-DP | bytes ratio | rounds ratio |"
)


def _dp_sgd_protocol(r: dict[str, Any]) -> str:
    return f"{r['protocol']} ({OPACUS})" if r.get("baseline") == OPACUS else r["protocol"]


def _dp_sgd_cells(r: dict[str, Any]) -> list[Any]:
    return [
        _dp_sgd_protocol(r), r["parties"], _wall(r), _fmt(_mb(r["bytes"])), _fmt(r["rounds"]),
        _fmt(r["accuracy"]), _fmt(r.get("opacus_accuracy")), _fmt(r["error_vs_plain"]),
        _fmt(r.get("epsilon")), _fmt(r.get("noise_multiplier"), ".4g"),
        _fmt(r.get("noise_multiplier_total"), ".4g"),
        _fmt(r.get("steps")), _fmt(r.get(NON_DP_RATIO)), _fmt(r.get(f"bytes_{NON_DP_RATIO}")),
        _fmt(r.get(f"rounds_{NON_DP_RATIO}")),
    ]  # fmt: skip


def dp_sgd_tables(records: list[dict[str, Any]]) -> list[str]:
    """The "DP-SGD on shares vs without DP" section: one table per DP-SGD task."""
    rows = [r for r in records if is_dp_sgd_row(r)]
    if not rows:
        return []
    lines = ["## DP-SGD on shares vs without DP", "",
             "`secure_ml` trains with DP-SGD on secret shares (Poisson mask, per-example "
             "clipping and Gaussian noise, all on shares); `secure_ml no-dp` is the same spec "
             "without `[dp]`, measured in the same command with the repeats interleaved. "
             "Ratios are the DP run's wall time, bytes and rounds over the no-dp run's. "
             f"`plaintext ({OPACUS})` is Opacus DP-SGD in plaintext with the same model, data, "
             "schedule and sigma. Sigma accounted is the noise multiplier the accountant "
             "calibrated; sigma total the noise all parties add together (each adds its own "
             "share of it, so that no coalition of t parties knows the calibrated part). "
             "Error vs plain: against the Opacus accuracy of the same run "
             "for DP rows, against the non-DP plaintext model for the no-dp row; with few "
             "epochs one noise draw moves it a lot.", ""]  # fmt: skip
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"### {task}", "", _DP_SGD_HEADER, "|---" * 15 + "|"]
        for r in rows:
            if r["task"] == task:
                lines.append(_table_row(_dp_sgd_cells(r)))
        lines.append("")
    return lines


_HE_HEADER = (
    "| protocol | parties | samples | samples/s | s per sample | latency s | MB up | MB down "
    "| MB sent | rounds | accuracy | agreement | max abs error | throughput ratio to naive |"
)


def _he_cells(r: dict[str, Any]) -> list[Any]:
    return [
        r["protocol"], r["parties"], _fmt(r.get("n_samples")),
        _fmt(r.get("samples_per_second"), ".4g"), _fmt(r.get("seconds_per_sample")),
        _fmt(r.get("latency_s")), _fmt(_mb(r.get("bytes_client_to_server"))),
        _fmt(_mb(r.get("bytes_server_to_client"))), _fmt(_mb(r["bytes"])), _fmt(r["rounds"]),
        _fmt(r["accuracy"]), _fmt(r.get("agreement_with_plaintext")),
        _fmt(r.get("max_abs_error")), _fmt(r.get(HE_RATIO), ".4g"),
    ]  # fmt: skip


def he_tables(records: list[dict[str, Any]]) -> list[str]:
    """The "HE inference vs MPC inference" section: one row per record of the HE task."""
    rows = [r for r in records if is_he_row(r)]
    if not rows:
        return []
    lines = ["## HE inference vs MPC inference, digits 64-32-10 square MLP", "",
             "One plaintext-trained model, the digits test split. `he.infer batched` packs one "
             "input feature of every sample into each CKKS ciphertext (no rotations); "
             "`he.infer per_sample` sends one ciphertext per sample (Galois keys in the "
             "context), on a few samples: its latency is one query's round trip. "
             "`tenseal naive` is TenSEAL's tutorial approach, one sample per ciphertext "
             "(vector-matrix products), in one process without transport and with the batched "
             "run's CKKS parameters: the throughput ratio is a batched row's samples/s over its. "
             "`ckks batched full slots` is the batched evaluation under the same conditions on "
             "N/2 rows (the test split repeated): the packing's capacity, as a batch costs the "
             "same up to N/2 samples. "
             "`secure_ml` is `mpc.infer` of the same weights (model owner and data owner, TTP "
             "dealer, one batch; inputs not clamped). Samples/s and latency exclude key "
             "generation; MB up/down is the client's traffic (public context included), MB "
             "sent the run's total as in the task tables. Agreement: predicted classes equal "
             "to the plaintext model's on the same inputs; max abs error: on the logits.",
             ""]  # fmt: skip
    lines += [_HE_HEADER, "|---" * 14 + "|"]
    lines += [_table_row(_he_cells(r)) for r in rows]
    lines.append("")
    return lines


def sweep_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, float]]]:
    """variable -> [(value, wall_s, bytes)] from 'secure_ml sweep:var=value' records."""
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in records:
        if "sweep:" in r["protocol"]:
            variable, value = r["protocol"].split("sweep:", 1)[1].split("=")
            series[variable].append((float(value), r["wall_s"], float(r["bytes"])))
    return dict(series)


def growth_exponent(xs: tuple[float, ...], ys: tuple[float, ...]) -> float | None:
    """Least-squares slope of log(y) on log(x): y grows like x**slope."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise DependencyError(
            "secure-ml bench draws plots with matplotlib: pip install 'secure-ml[bench]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_COLOURS = {"secure_ml": "tab:blue", ENCRYPTED: "tab:purple", "raw_crypten": "tab:grey",
            CLOSED_FORM: "tab:brown"}  # fmt: skip


def plot_costs(records: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    # ablations stay out: they would read as peers (green) and crowd the headline bars
    rows = [r for r in records if _in_task_tables(r) and r["protocol"] != "plaintext"]
    labels = [f"{r['task']}\n{r['protocol']} {r['parties']}p" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(rows)), 4.5))
    for ax, key, title in ((axes[0], "wall_s", "wall time (s)"), (axes[1], "bytes", "MB sent")):
        values = [(r[key] or 0) / (1e6 if key == "bytes" else 1) for r in rows]
        colours = [_COLOURS.get(r["protocol"], "tab:green") for r in rows]
        ax.bar(range(len(rows)), values, color=colours)
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title)
    fig.suptitle("cost per task and protocol (blue: secure_ml, purple: encrypted channels,\n"
                 "grey: raw CrypTen, brown: closed-form raw CrypTen, green: peers)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweeps(series: dict[str, list[tuple[float, float, float]]], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 4), squeeze=False)
    for ax, (variable, points) in zip(axes[0], series.items(), strict=True):
        xs, walls, sent = zip(*points, strict=True)
        ax.plot(xs, walls, "o-", label="wall s")
        ax2 = ax.twinx()
        ax2.plot(xs, [b / 1e6 for b in sent], "s--", color="tab:orange", label="MB sent")
        ax.set_xlabel(variable)
        ax.set_ylabel("wall s")
        ax2.set_ylabel("MB sent")
        ax.set_title(f"exponent {_fmt(growth_exponent(xs, walls))} (time)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
