"""The ``he_infer_digits_mlp`` bench task: CKKS inference beside MPC inference of one model.

One model for every row: a 64-32-10 MLP with square activations, trained once
in plaintext in the bench process (``trained_state``: standardised digits
clamped to +-4, SGD lr 0.01 momentum 0.9, 30 epochs, the suite's seed; a few
seconds) and saved as a state_dict in each run's scratch folder. Every row
predicts on the digits test split (test_fraction 0.2, the suite's seed).
Records, in the order the harness runs them:

* ``plaintext``: the model in PyTorch on the clamped test rows (one thread).
* ``he.infer batched`` (``HE_BATCHED``): ``he.infer``, one ciphertext per input
  feature across the whole test split. Its ``throughput_ratio_to_naive`` is its
  samples per second over the naive baseline's (same CKKS parameters).
* ``tenseal naive`` (``HE_NAIVE``): TenSEAL's tutorial approach, one sample per
  ciphertext (``sharing.he.naive_per_sample``: encrypt, vector-matrix products
  and squares, decrypt) in the bench process, without transport, on
  ``Settings.he_samples`` rows, with the CKKS parameters the batched run's
  server chose (``make_plan`` on the same spec; the ratio is only given when the
  two records' ``ckks`` agree). Measured together with the batched run, repeats
  interleaved.
* ``ckks batched full slots`` (``HE_FULL``): the batched evaluation in the
  bench process under the naive baseline's conditions (no transport, same CKKS
  parameters), on N/2 rows (the test split repeated): the packing's capacity,
  since a batch costs the same up to N/2 samples and the test split fills 9 %
  of them. Measured together with the naive run; its ratio is to the naive one.
* ``he.infer per_sample`` (``HE_PER_SAMPLE``): ``he.infer`` with one ciphertext
  per sample (Galois keys in the public context) on ``Settings.he_samples``
  rows: its ``latency_s`` is one query's round trip.
* ``secure_ml``: ``mpc.infer`` of the same state_dict, a model owner and a data
  owner with the TTP dealer, the whole test split in one batch. Its inputs are
  the standardised rows unclamped (``mpc.infer`` does not clamp; the clamped
  values are few, 67 of 23 000 at seed 0).

HE records' ``wall_s`` is the client's round trips (encrypt, send, evaluate,
receive, decrypt; keys excluded), the naive one's the sum of its per-sample
times, ``mpc.infer``'s the predict phase. Every record has
``samples_per_second``, ``seconds_per_sample``, ``latency_s`` (median round
trip; the whole batch for batched HE and MPC), ``bytes_client_to_server`` and
``bytes_server_to_client`` (None where no client/server split exists),
``agreement_with_plaintext`` and ``max_abs_error`` (logits against the
plaintext model on the same inputs, which is the record's ``error_vs_plain``).
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.bench.names import HE_BATCHED, HE_FULL, HE_NAIVE, HE_PER_SAMPLE, HE_RATIO
from secure_ml.spec import spec_from_dict

if TYPE_CHECKING:
    from secure_ml.bench.settings import Settings

SOURCE = "sklearn:digits"
TEST_FRACTION = 0.2
#: the model (64-32-10, square activations) and its plaintext training
HIDDEN = (32,)
EPOCHS, BATCH_SIZE, LR, MOMENTUM = 30, 64, 0.01, 0.9
#: the client clamps standardised inputs to +-INPUT_BOUND (as [he] input_bound)
INPUT_BOUND = 4.0
#: the CKKS parameters a ratio needs to share
CKKS_KEYS = ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits")
#: mpc.infer: the whole test split in one batch (so its latency is its wall time)
MPC_BATCH = 1024


# ------------------------------------------------------------------ the model --


@functools.lru_cache(maxsize=4)
def trained_state(seed: int) -> dict[str, torch.Tensor]:
    """The square MLP trained in plaintext on the digits train split (cached per seed)."""
    from secure_ml.data.preprocess import Standardiser
    from secure_ml.data.sources import load_source
    from secure_ml.models import TaskShape, build_model

    data = load_source(SOURCE, test_fraction=TEST_FRACTION, seed=seed)
    x = Standardiser.fit(data.x_train).transform(data.x_train).clamp(-INPUT_BOUND, INPUT_BOUND)
    y = data.y_train.long()
    model = build_model("mlp", TaskShape(tuple(x.shape[1:]), 10), seed=seed, hidden=HIDDEN,
                        activation="square")  # fmt: skip
    optimiser = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def weights_file(s: Settings, scratch: Path) -> Path:
    """The trained state_dict in ``scratch`` (the model owner's file)."""
    path = scratch / "he-digits-square-mlp.pt"
    if not path.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        torch.save(trained_state(s.seed), path)
    return path


def _model_table(s: Settings, scratch: Path) -> dict[str, Any]:
    return {"kind": "mlp", "hidden": list(HIDDEN), "activation": "square",
            "weights": str(weights_file(s, scratch))}  # fmt: skip


def _data_table() -> dict[str, Any]:
    return {"source": SOURCE, "partition": "horizontal", "test_fraction": TEST_FRACTION}


# ------------------------------------------------------------------- the specs --


def he_spec(s: Settings, scratch: Path, *, mode: str) -> dict[str, Any]:
    """``he.infer`` as protocols/he_infer_digits_mlp.toml, on this bench's model."""
    he: dict[str, Any] = {"mode": mode, "input_bound": INPUT_BOUND}
    if mode == "per_sample":
        he["max_samples"] = s.he_samples
    return {
        "protocol": {"name": "he.infer", "dealer": "none", "seed": s.seed},
        "party": [
            {"name": "clinic", "roles": ["data_owner", "receiver"], "crypten": False},
            {"name": "lab", "roles": ["model_owner"], "crypten": False},
        ],
        "data": _data_table(),
        "model": _model_table(s, scratch),
        "he": he,
    }


def mpc_spec(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
    """``mpc.infer`` of the same state_dict: the model owner, the client, n - 2 helpers."""
    parties = [{"name": "model_owner", "roles": ["model_owner"]},
               {"name": "client0", "roles": ["data_owner"]}]  # fmt: skip
    parties += [{"name": f"helper{i}", "roles": ["compute"]} for i in range(n - 2)]
    return {
        "protocol": {"name": "mpc.infer", "dealer": "ttp", "seed": s.seed},
        "party": parties,
        "data": _data_table(),
        "model": _model_table(s, scratch),
        "infer": {"batch_size": MPC_BATCH},
    }


def steps(name: str, s: Settings) -> list[tuple[str, str, int, Settings]]:
    """The task's steps after its plaintext one (the naive run right after the batched one)."""
    return [(name, HE_BATCHED, 2, s), (name, HE_NAIVE, 1, s), (name, HE_FULL, 1, s),
            (name, HE_PER_SAMPLE, 2, s), (name, "secure_ml", 2, s)]  # fmt: skip


# ---------------------------------------------------------------- the runners --


def _test_rows(spec_raw: dict[str, Any], limit: int = 0) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The HE client's clamped test rows (at most ``limit``; 0: all) and labels, and the spec."""
    from secure_ml.protocols.he_infer import client, client_inputs

    spec = spec_from_dict(spec_raw)
    x, y, _ = client_inputs(spec, client(spec))
    if limit:
        x, y = x[:limit], y[:limit]
    return spec, x, y


def _rates(n: int, seconds: list[float]) -> dict[str, float]:
    return {"samples_per_second": n / sum(seconds), "seconds_per_sample": sum(seconds) / n,
            "latency_s": statistics.median(seconds)}  # fmt: skip


def plaintext(s: Settings, scratch: Path) -> dict[str, Any]:
    """The plaintext record: the trained model in PyTorch on the clamped test rows."""
    from secure_ml.protocols.infer import predicted_classes

    _, x, y = _test_rows(he_spec(s, scratch, mode="batched"))
    model = _plain_model(s, x.shape[1])
    started = time.perf_counter()
    with torch.no_grad():
        predicted = predicted_classes(model(x.float()))
    seconds = time.perf_counter() - started
    return {"wall_s": seconds, "accuracy": float((predicted == y).float().mean()),
            "n_samples": len(x), "agreement_with_plaintext": 1.0,
            **_rates(len(x), [seconds])}  # fmt: skip


def _plain_model(s: Settings, in_features: int) -> torch.nn.Module:
    from secure_ml.models import TaskShape, build_model

    model = build_model("mlp", TaskShape((in_features,), 10), seed=s.seed, hidden=HIDDEN,
                        activation="square")  # fmt: skip
    model.load_state_dict(trained_state(s.seed))
    return model.eval()


# ``task`` is the harness's Task (not imported here: bench.tasks imports this module)
def he_run(task: Any, s: Settings, parties: int, scratch: Path, *, mode: str) -> dict[str, Any]:
    """One ``he.infer`` run (``mode``: batched or per_sample) through ``run_protocol``."""
    from secure_ml.api import run_protocol

    spec = spec_from_dict(he_spec(s, scratch, mode=mode))
    result = run_protocol(spec, out=scratch / "run")
    metrics = result["metrics"]
    return {
        "wall_s": result["timings"]["round_trips"],
        "bytes": result["comm"]["bytes"],
        "bytes_per_party": [p["bytes"] for p in result["comm"]["per_party"]],
        "rounds": result["comm"]["rounds"],
        "peak_rss_mb": max(result["peak_rss_mb"].values()),
        "channel": result["transport"]["channel"],
        "dealer": spec.protocol.dealer,
        "mode": mode,
        "n_samples": metrics["n_predictions"],
        **{key: metrics[key] for key in ("samples_per_second", "seconds_per_sample",
                                         "latency_s", "bytes_client_to_server",
                                         "bytes_server_to_client", "accuracy",
                                         "agreement_with_plaintext", "max_abs_error", "ckks")},
        "public_context_bytes": metrics["public_context_bytes"],
    }  # fmt: skip


def naive_run(task: Any, s: Settings, parties: int, scratch: Path) -> dict[str, Any]:
    """TenSEAL's one-sample-per-ciphertext evaluation in this process (no transport)."""
    from secure_ml.protocols.he_infer import make_plan
    from secure_ml.sharing import he

    spec, x, y = _test_rows(he_spec(s, scratch, mode="batched"), s.he_samples)
    program, params = make_plan(spec, tuple(x.shape[1:]))  # what the batched server chose
    outputs, seconds = he.naive_per_sample(params, program, x)
    return _in_process_record(s, x, y, outputs, seconds, "per_sample", (program, params))


def full_slots_run(task: Any, s: Settings, parties: int, scratch: Path) -> dict[str, Any]:
    """The batched evaluation on N/2 rows (the test split repeated) in this process."""
    from secure_ml.protocols.he_infer import make_plan
    from secure_ml.sharing import he

    spec, x, y = _test_rows(he_spec(s, scratch, mode="batched"))
    program, params = make_plan(spec, tuple(x.shape[1:]))
    copies = -(-params.slots // len(x))
    x, y = x.repeat(copies, 1)[: params.slots], y.repeat(copies)[: params.slots]
    outputs, seconds = he.batched_in_process(params, program, x)
    return _in_process_record(s, x, y, outputs, [seconds], "batched", (program, params))


def _in_process_record(
    s: Settings, x: torch.Tensor, y: torch.Tensor, outputs: torch.Tensor, seconds: list[float],
    mode: str, plan: tuple[Any, Any],
) -> dict[str, Any]:  # fmt: skip
    """A record of an evaluation in the bench process: no transport, no dealer."""
    from secure_ml.protocols.infer import predicted_classes

    program, params = plan
    with torch.no_grad():
        plain = _plain_model(s, x.shape[1]).double()(x)
    classes = predicted_classes(outputs)
    return {
        "wall_s": sum(seconds),
        "bytes": 0,
        "rounds": 0,
        "dealer": None,
        "mode": mode,
        "n_samples": len(x),
        **_rates(len(x), seconds),
        "bytes_client_to_server": None,
        "bytes_server_to_client": None,
        "accuracy": float((classes == y).float().mean()),
        "agreement_with_plaintext": float((classes == predicted_classes(plain)).float().mean()),
        "max_abs_error": float((outputs - plain).abs().max()),
        "ckks": {**params.describe(), "model_depth": program.depth},
    }


def mpc_fields(result: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The HE table's fields of an ``mpc.infer`` run (one batch: latency = wall time)."""
    metrics = result["metrics"]
    n = metrics["n_predictions"]
    return {
        "n_samples": n,
        **_rates(n, [wall_s]),
        "bytes_client_to_server": None,
        "bytes_server_to_client": None,
        "agreement_with_plaintext": metrics.get("agreement_with_plaintext"),
    }


# ------------------------------------------------------------------- the ratio --


def same_ckks(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return False
    return all(list(_listed(a.get(k))) == list(_listed(b.get(k))) for k in CKKS_KEYS)


def _listed(value: Any) -> Any:
    return value if isinstance(value, (list, tuple)) else [value]


def add_throughput_ratio(records: list[dict[str, Any]]) -> None:
    """``throughput_ratio_to_naive``: a batched record's samples/s over the naive one's.

    Same task and settings, and the same CKKS parameters; every other record
    gets None. First, every record with ``n_samples`` gets its samples per
    second and seconds per sample from its median wall time (a summary keeps
    the last repeat's other fields; for these records the wall time is exactly
    the time of its ``n_samples``), so that the ratio is of medians.
    """
    for r in records:
        if r.get("n_samples") and r.get("samples_per_second") is not None and r["wall_s"] > 0:
            r["samples_per_second"] = r["n_samples"] / r["wall_s"]
            r["seconds_per_sample"] = r["wall_s"] / r["n_samples"]
    naive = {r["task"]: r for r in records if r["protocol"] == HE_NAIVE}
    for r in records:
        base = naive.get(r["task"])
        comparable = (
            r["protocol"] in (HE_BATCHED, HE_FULL)
            and base is not None
            and base["settings"] == r["settings"]
            and same_ckks(r.get("ckks"), base.get("ckks"))
        )
        r[HE_RATIO] = r["samples_per_second"] / base["samples_per_second"] if comparable else None
