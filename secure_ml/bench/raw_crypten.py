"""Raw-CrypTen baselines: the benchmark tasks written as a CrypTen user would.

Each baseline uses only crypten's own API (``crypten.init``, ``cryptensor``,
``crypten.nn``, ``crypten.optim``) with CrypTen's defaults, in fresh
interpreters (one per party, plus the TTP server), one torch thread each. The
only secure_ml code inside a party is the import fix and the exact decode
(without them crypten does not run on this torch, or decodes wrongly), and the
public data pipeline that gives both implementations the same inputs.
Communication is counted by CrypTen's own counters, as for secure_ml runs.

Run as ``python -m secure_ml.bench.raw_crypten TASK PARTIES DEALER OUT_JSON``
(the launcher side, ``run_baseline``, does this for every rank).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from secure_ml.errors import PartyFailure

BASELINES = (
    "logreg_breast_cancer",
    "logreg_breast_cancer_closed_form",
    "digits_mlp_train",
    "resnet18_infer",
)
TIMEOUT_S = 900


# ---------------------------------------------------------------- launcher --


def run_baseline(task: str, *, parties: int, dealer: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``task`` on fresh processes; return wall time, comm and accuracy."""
    with tempfile.TemporaryDirectory(prefix="raw-crypten-") as tmp:
        ranks = parties + (1 if dealer == "ttp" else 0)
        outputs = [Path(tmp) / f"rank{r}.json" for r in range(ranks)]
        env = {
            **os.environ, "WORLD_SIZE": str(parties), "DISTRIBUTED_BACKEND": "gloo",
            "RENDEZVOUS": f"file://{tmp}/rendezvous", "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secure_ml.bench.raw_crypten",
                    task,
                    dealer,
                    json.dumps(config),
                    str(outputs[r]),
                ],
                env={**env, "RANK": str(r)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for r in range(ranks)
        ]
        _wait_all(procs)
        records = [json.loads(p.read_text()) for p in outputs]
    compute = records[:parties]
    return {
        "wall_s": max(r["seconds"] for r in compute),
        "bytes": sum(r["bytes"] for r in records),
        "bytes_per_party": [r["bytes"] for r in records],
        "rounds": max(r["rounds"] for r in compute),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
        "result": next((r["result"] for r in compute if r["result"] is not None), None),
    }


def _wait_all(procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                error = failed[0].stderr.read().decode()[-2000:] if failed else "timeout"
                raise PartyFailure("raw-crypten baseline", error)
            if all(p.poll() == 0 for p in procs):
                return
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


# ------------------------------------------------------------ party side --


def _crypten() -> Any:
    from secure_ml.compat import decode, onnx_import

    crypten = onnx_import.import_crypten()
    decode.apply(crypten)
    return crypten


def _vertical_breast_cancer(parties: int, seed: int) -> tuple[list[torch.Tensor], ...]:
    from secure_ml.data.partition import vertical_columns
    from secure_ml.data.preprocess import Standardiser
    from secure_ml.data.sources import load_source

    data = load_source("sklearn:breast_cancer", test_fraction=0.2, seed=seed)
    blocks = vertical_columns(data.x_train.shape[1], parties)
    trains, tests = [], []
    for block in blocks:
        scaler = Standardiser.fit(data.x_train[:, block])
        trains.append(scaler.transform(data.x_train[:, block]))
        tests.append(scaler.transform(data.x_test[:, block]))
    return trains, tests, data.y_train.float().unsqueeze(1), data.y_test.float().unsqueeze(1)


def logreg_breast_cancer(crypten: Any, rank: int, parties: int, config: dict[str, Any]) -> Any:
    """Vertical LR: each party encrypts its columns, the last one the labels."""
    trains, tests, y_train, y_test = _vertical_breast_cancer(parties, config["seed"])
    x = crypten.cat([crypten.cryptensor(t, src=i) for i, t in enumerate(trains)], dim=1)
    x_test = crypten.cat([crypten.cryptensor(t, src=i) for i, t in enumerate(tests)], dim=1)
    y = crypten.cryptensor(y_train, src=parties - 1)
    torch.manual_seed(config["seed"])
    model = _with_weights_of(crypten.nn.Linear(30, 1), torch.nn.Linear(30, 1))
    model.encrypt().train()
    loss_fn = crypten.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    for batches in _schedule(len(y_train), config):
        for index in batches:
            loss = loss_fn(model(x[index]), y[index])
            model.zero_grad()
            loss.backward()
            model.update_parameters(config["lr"])
    seconds = time.perf_counter() - started
    correct = ((model(x_test) > 0) == crypten.cryptensor(y_test, src=parties - 1)).sum()
    return seconds, float(correct.get_plain_text()) / len(y_test)


def logreg_breast_cancer_closed_form(
    crypten: Any, rank: int, parties: int, config: dict[str, Any]
) -> Any:
    """The same LR as a CrypTen user who knows its gradient writes it: no autograd.

    Plain encrypted tensors: ``grad = X^T (sigmoid(Xw + b) - y) / B`` on every
    step, and the loss of each epoch's last batch computed and opened once per
    epoch, as secure_ml's mpc.train does.
    """
    trains, tests, y_train, y_test = _vertical_breast_cancer(parties, config["seed"])
    x = crypten.cat([crypten.cryptensor(t, src=i) for i, t in enumerate(trains)], dim=1)
    x_test = crypten.cat([crypten.cryptensor(t, src=i) for i, t in enumerate(tests)], dim=1)
    y = crypten.cryptensor(y_train, src=parties - 1)
    torch.manual_seed(config["seed"])
    plain = torch.nn.Linear(30, 1)
    w = crypten.cryptensor(plain.weight.detach().t().clone(), src=0)
    b = crypten.cryptensor(plain.bias.detach().clone(), src=0)
    lr, loss_fn, losses = config["lr"], crypten.nn.BCEWithLogitsLoss(), []
    started = time.perf_counter()
    for batches in _schedule(len(y_train), config):
        for index in batches:
            xb, yb = x[index], y[index]
            z = xb.matmul(w) + b
            g = (z.sigmoid() - yb) / len(index)
            w = w - xb.t().matmul(g) * lr
            b = b - g.sum(0) * lr
        losses.append(float(loss_fn(z, yb).get_plain_text()))
    seconds = time.perf_counter() - started
    correct = ((x_test.matmul(w) + b > 0) == crypten.cryptensor(y_test, src=parties - 1)).sum()
    return seconds, float(correct.get_plain_text()) / len(y_test)


def digits_mlp_train(crypten: Any, rank: int, parties: int, config: dict[str, Any]) -> Any:
    """Horizontal MLP on digits: each party encrypts its rows and one-hot labels."""
    from secure_ml.data.partition import horizontal_rows
    from secure_ml.data.preprocess import Standardiser
    from secure_ml.data.sources import load_source
    from secure_ml.models import MLP

    data = load_source("sklearn:digits", test_fraction=0.2, seed=config["seed"])
    scaler = Standardiser.fit(data.x_train)
    rows = horizontal_rows(len(data.y_train), parties, seed=config["seed"])
    onehot = torch.nn.functional.one_hot(data.y_train, 10).float()
    x = crypten.cat(
        [crypten.cryptensor(scaler.transform(data.x_train[r]), src=i) for i, r in enumerate(rows)]
    )
    y = crypten.cat([crypten.cryptensor(onehot[r], src=i) for i, r in enumerate(rows)])
    sizes = [64, *config["hidden"], 10]
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [crypten.nn.Linear(a, b), crypten.nn.ReLU()]
    torch.manual_seed(config["seed"])
    model = _with_weights_of(crypten.nn.Sequential(*layers[:-1]), MLP(64, 10, config["hidden"]))
    model.encrypt().train()
    optimizer = crypten.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    loss_fn = crypten.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for batches in _schedule(x.shape[0], config):
        for index in batches:
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    x_test = crypten.cryptensor(scaler.transform(data.x_test), src=0)
    with crypten.no_grad():
        predicted = model(x_test).argmax(dim=1, one_hot=True)
    test_onehot = torch.nn.functional.one_hot(data.y_test, 10).float()
    correct = (predicted * crypten.cryptensor(test_onehot, src=0)).sum()
    return seconds, float(correct.get_plain_text()) / len(data.y_test)


def _with_weights_of(model: Any, plain: torch.nn.Module) -> Any:
    """Give a crypten.nn model the (seeded) initial weights of the same PyTorch model."""
    layers = [m for m in model.modules() if hasattr(m, "_parameters") and m._parameters]
    plain_layers = [m for m in plain.modules() if isinstance(m, torch.nn.Linear)]
    for layer, source in zip(layers, plain_layers, strict=True):
        layer.set_parameter("weight", source.weight.detach().clone())
        layer.set_parameter("bias", source.bias.detach().clone())
    return model


def resnet18_infer(crypten: Any, rank: int, parties: int, config: dict[str, Any]) -> Any:
    """ResNet-18 on 32x32 images: party 0 owns the model, party 1 the images.

    Converting a torchvision model needs ``from_pytorch``, which on this torch
    needs our export patch too (a CrypTen user has no other way).
    """
    import torchvision

    from secure_ml.compat import from_pytorch

    from_pytorch.apply(crypten)
    from secure_ml.bench.tasks import synthetic_images

    torch.manual_seed(config["seed"])
    plain = torchvision.models.resnet18(num_classes=10).eval()
    images = synthetic_images(config["images"]).float() / 255
    model = crypten.nn.from_pytorch(plain, torch.zeros(1, 3, 32, 32)).encrypt(src=0)
    model.eval()
    started = time.perf_counter()
    with crypten.no_grad():
        out = model(crypten.cryptensor(images, src=1)).get_plain_text(dst=1)
    seconds = time.perf_counter() - started
    if out is None:
        return seconds, None
    with torch.no_grad():
        return seconds, float((out - plain(images)).abs().max())


def _schedule(n_rows: int, config: dict[str, Any]) -> list[list[torch.Tensor]]:
    from secure_ml.data.partition import batch_schedule

    return batch_schedule(
        n_rows, batch_size=config["batch_size"], epochs=config["epochs"], seed=config["seed"]
    )


def main(argv: list[str]) -> None:
    task, dealer, config, out = argv[0], argv[1], json.loads(argv[2]), Path(argv[3])
    torch.set_num_threads(1)
    crypten = _crypten()
    crypten.cfg.mpc.provider = dealer.upper()
    crypten.cfg.communicator.verbose = True  # CrypTen's byte and round counters
    rank, parties = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if rank == parties:  # the trusted third party serves triples until told to stop
        crypten.mpc.provider.TTPServer()
        seconds, result = 0.0, None
    else:
        crypten.init()
        seconds, result = globals()[task](crypten, rank, parties, config)
    stats = crypten.communicator.get().get_communication_stats()
    record = {
        "seconds": seconds, "bytes": int(stats["bytes"]), "rounds": int(stats["rounds"]),
        "result": result, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    out.write_text(json.dumps(record))
    if rank != parties:
        crypten.uninit()


if __name__ == "__main__":
    main(sys.argv[1:])
