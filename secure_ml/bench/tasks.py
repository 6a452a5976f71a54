"""Benchmark tasks: one computation, runnable under every protocol that exists.

A task knows how to express itself as a secure_ml spec for ``n`` parties, how
to run in plaintext PyTorch (the reference), and which raw-CrypTen baseline,
if any, computes the same thing. Adding a protocol means adding a runner in
``harness.py``; adding a task means adding an entry here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from secure_ml.bench.dp_rows import DP_PARTIES, central_dp_stats, dp_stats_spec
from secure_ml.bench.dp_sgd_rows import opacus_plaintext, with_dp
from secure_ml.bench.he_rows import mpc_spec, plaintext
from secure_ml.bench.names import HE_TASK
from secure_ml.bench.settings import Settings
from secure_ml.spec import Spec, spec_from_dict


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "train", "infer" or "release" (DP statistics)
    make_spec: Callable[[int, Settings, Path], dict[str, Any]]
    plaintext: Callable[[Settings, Path], dict[str, Any]]
    #: raw CrypTen as its tutorials teach it (crypten.nn, autograd through the loss)
    raw_baseline: str | None = None
    #: raw CrypTen written with the same algorithm as ours (closed-form gradient,
    #: loss once per epoch): the ratio to it is what the engine alone buys
    raw_closed_form: str | None = None
    raw_config: Callable[[Settings], dict[str, Any]] = field(default=lambda s: {})
    metric: str = "accuracy"  # or "max_abs_error" (logits against plaintext), "dp_error"
    #: a fixed number of compute parties, whatever the suite's ``parties``
    parties: int | None = None
    #: trains with DP-SGD ([dp] in its spec): also run without [dp], measured together
    dp_sgd: bool = False
    #: HE inference beside MPC inference of one model (see he_rows): its own rows
    he: bool = False


def _parties(n: int, *, vertical: bool, receiver_last: bool = True) -> list[dict[str, Any]]:
    parties = [{"name": f"party{i}", "roles": ["data_owner"]} for i in range(n)]
    extra = ["label_owner", "receiver"] if vertical else ["receiver"]
    parties[-1 if receiver_last else 0]["roles"] += extra
    return parties


def _train_spec(source: str, partition: str, kind: str, lr: float, momentum: float) -> Callable:
    def make(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
        return {
            "protocol": {"name": "mpc.train", "dealer": "ttp", "seed": s.seed},
            "party": _parties(n, vertical=partition == "vertical"),
            "data": {"source": source, "partition": partition},
            "model": {"kind": kind, "hidden": list(s.hidden)},
            "train": {
                "epochs": s.epochs,
                "batch_size": s.batch_size,
                "lr": lr,
                "momentum": momentum,
            },
        }

    return make


def _plaintext_train(make_spec: Callable) -> Callable[[Settings, Path], dict[str, Any]]:
    def run(s: Settings, scratch: Path) -> dict[str, Any]:
        from secure_ml.protocols.train import plaintext_train

        spec = spec_from_dict(make_spec(2, s, scratch))
        _, metrics = plaintext_train(spec)
        return {
            "wall_s": metrics["plaintext_train_seconds"],
            "accuracy": metrics["plaintext_accuracy"],
        }

    return run


logreg_spec = _train_spec("sklearn:breast_cancer", "vertical", "logreg", lr=0.5, momentum=0.0)
mlp_spec = _train_spec("sklearn:digits", "horizontal", "mlp", lr=0.1, momentum=0.9)
#: the headline logistic regression with DP-SGD on shares (see dp_sgd_rows)
dp_logreg_spec = with_dp(logreg_spec)


def _digits_checkpoint(s: Settings, scratch: Path) -> Path:
    """A plaintext-trained digits MLP saved as a whole module (the model owner's file)."""
    path = scratch / f"digits-mlp-{'-'.join(map(str, s.hidden))}.pt"
    if not path.exists():
        from secure_ml.protocols.train import plaintext_train

        model, _ = plaintext_train(spec_from_dict(mlp_spec(2, s, scratch)))
        torch.save(model, path)
    return path


def _infer_parties(n: int) -> list[dict[str, Any]]:
    """A model owner, one client with the inputs, and n - 2 compute-only parties."""
    parties = [{"name": "model_owner", "roles": ["model_owner"]}]
    parties.append({"name": "client0", "roles": ["data_owner"]})
    return parties + [{"name": f"helper{i}", "roles": ["compute"]} for i in range(n - 2)]


def _infer_spec(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
    parties = _infer_parties(n)
    return {
        "protocol": {"name": "mpc.infer", "dealer": "ttp", "seed": s.seed},
        "party": parties,
        "data": {"source": "sklearn:digits", "partition": "horizontal"},
        "model": {"kind": f"checkpoint:{_digits_checkpoint(s, scratch)}"},
        "infer": {"batch_size": 128},
    }


def _plaintext_infer(s: Settings, scratch: Path) -> dict[str, Any]:
    from secure_ml.protocols.infer import inputs, predicted_classes

    spec: Spec = spec_from_dict(_infer_spec(2, s, scratch))
    model = torch.load(_digits_checkpoint(s, scratch), weights_only=False).eval()
    local = inputs(spec, spec.roster.by_name("client0"))
    started = time.perf_counter()
    with torch.no_grad():
        predicted = predicted_classes(model(local.x_test))
    seconds = time.perf_counter() - started
    return {"wall_s": seconds, "accuracy": float((predicted == local.y_test).float().mean())}


RESNET_IMAGES = 2


def synthetic_images(n: int, seed: int = 1) -> torch.Tensor:
    """Random 32x32 RGB images as uint8 (no image data can be downloaded here)."""
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)  # fmt: skip


def _write_cifar_format(root: Path, images: torch.Tensor) -> None:
    """Write ``images`` as CIFAR-10's python batches (both splits) under ``root``."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batch = {"data": images.reshape(len(images), -1).numpy(), "labels": [0] * len(images)}
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def _resnet_spec(n: int, s: Settings, scratch: Path) -> dict[str, Any]:
    _write_cifar_format(scratch / "cifar", synthetic_images(RESNET_IMAGES))
    return {
        "protocol": {"name": "mpc.infer", "dealer": "ttp", "seed": s.seed},
        "party": _infer_parties(n),
        "data": {"source": f"torchvision:CIFAR10:{scratch / 'cifar'}", "partition": "horizontal"},
        "model": {"kind": "torchvision:resnet18", "num_classes": 10},
        "infer": {"batch_size": RESNET_IMAGES},
    }  # fmt: skip


def _plaintext_resnet(s: Settings, scratch: Path) -> dict[str, Any]:
    import torchvision

    torch.manual_seed(s.seed)
    model = torchvision.models.resnet18(num_classes=10).eval()
    images = synthetic_images(RESNET_IMAGES).float() / 255
    started = time.perf_counter()
    with torch.no_grad():
        model(images)
    return {"wall_s": time.perf_counter() - started, "accuracy": None, "max_abs_error": 0.0}


def _schedule_config(*, with_hidden: bool = False, **fixed: float) -> Callable:
    """The raw baseline's settings: the suite's schedule plus the task's fixed ones."""

    def config(s: Settings) -> dict[str, Any]:
        hidden = {"hidden": list(s.hidden)} if with_hidden else {}
        return {"seed": s.seed, "epochs": s.epochs, "batch_size": s.batch_size, **fixed, **hidden}

    return config


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "logreg_breast_cancer",
            "train",
            logreg_spec,
            _plaintext_train(logreg_spec),
            raw_baseline="logreg_breast_cancer",
            raw_closed_form="logreg_breast_cancer_closed_form",
            raw_config=_schedule_config(lr=0.5),
        ),
        Task(
            "digits_mlp_train",
            "train",
            mlp_spec,
            _plaintext_train(mlp_spec),
            raw_baseline="digits_mlp_train",
            raw_config=_schedule_config(lr=0.1, momentum=0.9, with_hidden=True),
        ),
        Task("digits_mlp_infer", "infer", _infer_spec, _plaintext_infer),
        Task(
            "resnet18_infer",
            "infer",
            _resnet_spec,
            _plaintext_resnet,
            raw_baseline="resnet18_infer",
            raw_config=lambda s: {"seed": s.seed, "images": RESNET_IMAGES},
            metric="max_abs_error",
        ),
        # DP-SGD on shares beside the same run without [dp] and Opacus (see dp_sgd_rows)
        Task(
            "dp_logreg_breast_cancer",
            "train",
            dp_logreg_spec,
            opacus_plaintext(dp_logreg_spec),
            dp_sgd=True,
        ),
        # the released statistics' error against the exact ones (see dp_rows)
        Task(
            "dp_stats_breast_cancer",
            "release",
            dp_stats_spec,
            central_dp_stats,
            metric="dp_error",
            parties=DP_PARTIES,
        ),
        # he.infer batched and per sample, TenSEAL's naive baseline, mpc.infer (see he_rows)
        Task(HE_TASK, "infer", mpc_spec, plaintext, he=True),
    )
}
