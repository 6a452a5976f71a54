"""The plaintext Opacus baseline of a DP-SGD run (``metrics.opacus_*``).

``mpc.train`` with ``[dp]`` trains with DP-SGD on secret shares
(``secure_ml.protocols.dp_sgd``). Where the data is public (built-in sources)
the launcher also trains the same model, on the same pooled data, with the
same schedule and the same noise multiplier, with Opacus's ``PrivacyEngine``
in plaintext. The gap between the two accuracies is what the shared
implementation costs (fixed point, its clipping, its sampler); the gap to
``plaintext_accuracy`` is what the privacy costs.

What is the same as on shares: the standardised pooled rows with the training
features (and regression targets) clamped to +-FEATURE_BOUND; the model and
its seeded initial weights; ``steps_per_epoch = ceil(rows / batch_size)``
Poisson-sampled steps at rate ``q = 1 / steps_per_epoch``
(``DPDataLoader``); the noise multiplier of ``make_plan`` (calibrated at
``q`` rounded down to the 2^-16 grid); clipping to ``max_grad_norm``; the
per-example loss; SGD with the spec's lr and momentum.

What differs, by Opacus's design: Opacus samples at the exact ``1 / len(loader)``
(the shares sample at the grid rate, at most 2^-16 lower, so Opacus's epsilon
can be a hair above the target), and it divides the noisy sum by
``int(rows * q)`` where the shares divide by ``rows * q``. An empty Poisson
batch is a noise-only step, as in Opacus.

``opacus`` is imported inside the functions, like ``accounting``: this module
and ``accounting`` are the only places that import it.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, TensorDataset

if TYPE_CHECKING:
    from secure_ml.protocols.dp_sgd import DPSGDPlan
    from secure_ml.spec import Spec


def opacus_train(spec: Spec, data: Any, model: torch.nn.Module, loss_fn: Any) -> dict[str, Any]:
    """Train ``model`` in place with Opacus on the pooled public ``data`` (already
    ``bounded``); Opacus's account of the run.

    Keys: ``opacus_epsilon`` (Opacus's own accountant for this run),
    ``opacus_noise_multiplier``, ``opacus_sample_rate`` and ``opacus_train_seconds``.
    ``secure_ml.protocols.train.opacus_reference`` prepares the data and the
    model and scores the result (``opacus_accuracy``).
    """
    from secure_ml.protocols.dp_sgd import make_plan

    plan = make_plan(spec, len(data.x_train))
    started = time.perf_counter()
    engine, rate = fit(spec, plan, model, data, loss_fn)
    seconds = time.perf_counter() - started
    return {
        "opacus_epsilon": float(engine.get_epsilon(delta=spec.dp.delta)),
        "opacus_noise_multiplier": plan.noise_multiplier,
        "opacus_sample_rate": rate,
        "opacus_train_seconds": seconds,
    }


def bounded(data: Any) -> Any:
    """Clamp the training features (and regression targets) as ``bound_inputs`` does on shares."""
    from secure_ml.protocols.dp_sgd import FEATURE_BOUND

    x_train = data.x_train.flatten(1).clamp(-FEATURE_BOUND, FEATURE_BOUND)
    y_train = data.y_train
    if data.task == "regression":
        y_train = y_train.clamp(-FEATURE_BOUND, FEATURE_BOUND)
    return data._replace(x_train=x_train, x_test=data.x_test.flatten(1), y_train=y_train)


def fit(
    spec: Spec, plan: DPSGDPlan, model: torch.nn.Module, data: Any, loss_fn: Any
) -> tuple[Any, float]:
    """Opacus's DP-SGD on ``model`` (trained in place); the engine and Opacus's sample rate."""
    from opacus import PrivacyEngine

    seed = spec.protocol.seed
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=spec.train.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    rate = check_schedule(plan, len(loader))
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum)
    with warnings.catch_warnings():
        # a seeded, reproducible baseline on public data whose model is never released:
        # Opacus's secure-RNG warning and torch's note on inputs without grad are noise here
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant=spec.dp.accountant)
        private, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
            poisson_sampling=True, noise_generator=torch.Generator().manual_seed(seed + 1),
        )  # fmt: skip
        run_epochs(private, optimizer, loader, plan.epochs, loss_fn)
    return engine, rate


def run_epochs(model: Any, optimizer: Any, loader: DataLoader, epochs: int, loss_fn: Any) -> None:
    """Opacus's training loop; an empty Poisson batch still steps (clipped sum 0, plus noise)."""
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()


def check_schedule(plan: DPSGDPlan, batches: int) -> float:
    """Opacus's rate 1 / len(loader): the same steps as the shares, the same rate up to the grid.

    Raises ValueError otherwise, since then the baseline would not be the same run.
    """
    from secure_ml.sharing.sampling import on_grid

    rate = 1 / batches
    if batches != plan.steps_per_epoch or on_grid(rate) != plan.sample_rate:
        raise ValueError(
            f"Opacus samples {batches} steps per epoch at rate {rate}; the shares take "
            f"{plan.steps_per_epoch} at {plan.sample_rate}: the baseline would not be the same run"
        )
    return rate
