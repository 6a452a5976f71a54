"""The ``dp_logreg_breast_cancer`` bench task: DP-SGD on shares against the same run without DP.

The task is the headline logistic regression (breast cancer, vertical, the
suite's schedule and seed) with ``[dp]`` epsilon = 3, delta = 1e-5 and
max_grad_norm = 1; ``mpc.train`` then trains with DP-SGD on shares
(``secure_ml.protocols.dp_sgd``). Three records per party count:

* ``plaintext`` with ``baseline = "opacus"``: Opacus DP-SGD in plaintext with
  the same model, data, schedule and sigma (``opacus_reference``); its wall time
  is Opacus's training time.
* ``secure_ml``: DP-SGD on shares. Its ``error_vs_plain`` is against the
  Opacus accuracy of the same run (``metrics.opacus_accuracy``).
* ``secure_ml no-dp``: the same spec without ``[dp]``, measured together with
  the DP run (repeats interleaved). Its ``error_vs_plain`` is against the
  non-DP plaintext accuracy of its own run.

The pure functions here turn a result.json into the record's fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from secure_ml.bench.names import OPACUS
from secure_ml.spec import spec_from_dict

if TYPE_CHECKING:
    from collections.abc import Callable

    from secure_ml.bench.settings import Settings

#: the task's privacy budget (as in protocols/dp_train_breast_cancer.toml)
DP_TRAIN = {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0}
#: result["privacy"] keys a DP-SGD record copies
PRIVACY_FIELDS = ("epsilon", "noise_multiplier", "noise_multiplier_total", "steps", "sample_rate")


def with_dp(make_spec: Callable) -> Callable[[int, Settings, Path], dict[str, Any]]:
    """``make_spec`` plus the ``[dp]`` table, with fresh per-party ledgers in ``scratch``.

    ``mpc.train`` with ``[dp]`` charges every owner's ledger, so each run gets
    its own in its scratch folder: no budget carries over between repeats.
    """

    def make(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
        ledger = str(scratch / "ledgers" / "{party}.json")
        return {**make_spec(n, s, scratch), "dp": {**DP_TRAIN, "ledger": ledger}}

    return make


def without_dp(raw: dict[str, Any]) -> dict[str, Any]:
    """The spec ``raw`` with its ``[dp]`` table removed (the non-DP twin)."""
    return {key: value for key, value in raw.items() if key != "dp"}


def from_result(result: dict[str, Any]) -> dict[str, Any]:
    """A DP-SGD task's record fields: privacy and the reference accuracies.

    The non-DP twin (``privacy`` null) keeps only its plaintext accuracy.
    """
    metrics, privacy = result["metrics"], result.get("privacy")
    fields = {"plaintext_accuracy": metrics.get("plaintext_accuracy")}
    if privacy is None:
        return fields
    return {
        **fields,
        **{key: privacy[key] for key in PRIVACY_FIELDS},
        "opacus_accuracy": metrics.get("opacus_accuracy"),
    }


def opacus_plaintext(make_spec: Callable) -> Callable[[Settings, Path], dict[str, Any]]:
    """The plaintext record of a DP-SGD task: Opacus with the same spec (``opacus_reference``)."""

    def run(s: Settings, scratch: Path) -> dict[str, Any]:
        from secure_ml.protocols.train import opacus_reference

        metrics = opacus_reference(spec_from_dict(make_spec(2, s, scratch)))
        return {
            "wall_s": metrics["opacus_train_seconds"],
            "accuracy": metrics["opacus_accuracy"],
            "baseline": OPACUS,
            "epsilon": metrics["opacus_epsilon"],
            "noise_multiplier": metrics["opacus_noise_multiplier"],
            "noise_multiplier_total": metrics["opacus_noise_multiplier"],  # added once
            "sample_rate": metrics["opacus_sample_rate"],
            # Opacus samples at 1 / len(loader): len(loader) steps per epoch
            "steps": round(1 / metrics["opacus_sample_rate"]) * s.epochs,
            "opacus_accuracy": metrics["opacus_accuracy"],
        }

    return run
