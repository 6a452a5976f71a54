"""The logreg_breast_cancer task on SecretFlow SPU, with real party processes.

Run by `make bench-peers` inside benchmarks/.venv-spu (not secure_ml's venv).
Each party is its own process with a brpc link on loopback: SEMI2K for 2
parties, ABY3 for 3. As in secure_ml's task, each party holds a block of the
30 standardised columns (split and scaling as secure_ml does them), the last
one the labels; logistic regression is trained with mini-batch SGD (batch 64,
lr 0.5) for the given epochs. Each party secret-shares its own block and sends
the other parties their shares; all run the same compiled SPU program; the
weights are opened to party 0, which measures test accuracy.

Timing covers the training program only (`Runtime.run`), like secure_ml's
records. Bytes come from SPU's own link statistics in its log.

    python run_spu_logreg.py --parties 2 --epochs 5 --out spu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROTOCOLS = {2: "SEMI2K", 3: "ABY3"}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def party_data(parties: int, seed: int = 0):
    """secure_ml's split (numpy permutation by seed) and per-owner standardisation."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data.astype(np.float64), data.target.astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * 0.2)
    train, test = np.sort(order[n_test:]), np.sort(order[:n_test])
    edges = np.linspace(0, x.shape[1], parties + 1).round().astype(int)
    blocks_train, blocks_test = [], []
    for a, b in itertools.pairwise(edges):
        mean, std = x[train, a:b].mean(0), x[train, a:b].std(0)
        blocks_train.append(((x[train, a:b] - mean) / std).astype(np.float32))
        blocks_test.append(((x[test, a:b] - mean) / std).astype(np.float32))
    return blocks_train, blocks_test, y[train].astype(np.float32), y[test]


def training_program(n_blocks: int, n_rows: int, epochs: int, batch: int, lr: float, seed: int):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    schedule = [np.array_split(rng.permutation(n_rows), -(-n_rows // batch)) for _ in range(epochs)]

    def train(*args):
        x = jnp.concatenate(args[:n_blocks], axis=1)
        y = args[n_blocks]
        w, b = jnp.zeros(x.shape[1]), jnp.zeros(())
        for batches in schedule:
            for index in batches:
                xb, yb = x[index], y[index]
                err = 1 / (1 + jnp.exp(-(xb @ w + b))) - yb
                w = w - lr * (xb.T @ err) / len(index)
                b = b - lr * jnp.mean(err)
        return w, b

    return train


def party_main(args: argparse.Namespace) -> None:
    import spu
    import spu.utils.frontend as fe
    from spu import libspu

    n, rank = args.parties, args.rank
    desc = libspu.link.Desc()
    for i, port in enumerate(args.ports):
        desc.add_party(f"party{i}", f"127.0.0.1:{port}")
    link = libspu.link.create_brpc(desc, rank, log_details=True)
    config = libspu.RuntimeConfig(
        protocol=getattr(libspu.ProtocolKind, PROTOCOLS[n]), field=libspu.FieldType.FM64
    )
    config.enable_pphlo_profile = True
    io = spu.Io(n, config)
    runtime = spu.Runtime(link, config)

    blocks_train, blocks_test, y_train, y_test = party_data(n)
    mine = [blocks_train[rank]] + ([y_train] if rank == n - 1 else [])
    names = [f"x{rank}"] + (["y"] if rank == n - 1 else [])
    for name, value in zip(names, mine, strict=True):
        shares = io.make_shares(value, libspu.Visibility.VIS_SECRET, owner_rank=rank)
        for peer in range(n):
            if peer != rank:
                link.send(
                    peer,
                    json.dumps(
                        {
                            "name": name,
                            "meta": shares[peer].meta.hex(),
                            "chunks": [c.hex() for c in shares[peer].share_chunks],
                        }
                    ),
                )
        runtime.set_var(name, shares[rank])
    for peer in range(n):
        for _ in range(1 + (1 if peer == n - 1 else 0)):
            if peer == rank:
                continue
            message = json.loads(link.recv(peer))
            share = libspu.Share()
            share.meta = bytes.fromhex(message["meta"])
            share.share_chunks = [bytes.fromhex(c) for c in message["chunks"]]
            runtime.set_var(message["name"], share)

    program = training_program(n, len(y_train), args.epochs, 64, 0.5, seed=0)
    inputs = [np.zeros_like(b) for b in blocks_train] + [np.zeros_like(y_train)]
    executable, _ = fe.compile(
        fe.Kind.JAX,
        program,
        inputs,
        {},
        [f"x{i}" for i in range(n)] + ["y"],
        [libspu.Visibility.VIS_SECRET] * (n + 1),
        lambda outs: ["w", "b"],
    )
    link.barrier()
    started = time.perf_counter()
    runtime.run(executable)
    seconds = time.perf_counter() - started

    gathered = [
        link.gather(
            runtime.get_var(v).meta.hex()
            + "|"
            + ",".join(c.hex() for c in runtime.get_var(v).share_chunks),
            0,
        )
        for v in ("w", "b")
    ]
    if rank == 0:
        w, b = (io.reconstruct([_share(libspu, s) for s in shares]) for shares in gathered)
        logits = np.concatenate(blocks_test, axis=1) @ w + b
        accuracy = float(((logits > 0) == (y_test > 0.5)).mean())
        Path(args.out).write_text(json.dumps({"seconds": seconds, "accuracy": accuracy}))
    link.barrier()


def _share(libspu, text: str):
    meta, chunks = text.split("|")
    share = libspu.Share()
    share.meta = bytes.fromhex(meta)
    share.share_chunks = [bytes.fromhex(c) for c in chunks.split(",") if c]
    return share


def launcher_main(args: argparse.Namespace) -> None:
    ports = free_ports(args.parties)
    tmp = Path(args.out).with_suffix(".party0.json")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--parties",
                str(args.parties),
                "--epochs",
                str(args.epochs),
                "--rank",
                str(r),
                "--ports",
                *map(str, ports),
                "--out",
                str(tmp),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(args.parties)
    ]
    logs = [p.communicate(timeout=args.timeout)[0] for p in procs]
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        sys.exit(f"SPU party {failed[0]} failed:\n{logs[failed[0]][-3000:]}")
    measured = json.loads(tmp.read_text())
    totals = [re.findall(r"Link details: total send bytes (\d+).*?send actions (\d+)", log)
              for log in logs]  # fmt: skip
    sent = [sum(int(b) for b, _ in t) for t in totals]
    actions = [sum(int(a) for _, a in t) for t in totals]
    record = {
        "task": "logreg_breast_cancer",
        "protocol": f"spu_{PROTOCOLS[args.parties].lower()}",
        "parties": args.parties,
        "wall_s": measured["seconds"],
        "wall_min_s": measured["seconds"],
        "wall_max_s": measured["seconds"],
        "bytes": sum(sent) or None,
        "bytes_per_party": sent,
        "rounds": None,
        "send_actions": max(actions),
        "accuracy": measured["accuracy"],
        "settings": {"epochs": args.epochs},
    }
    Path(args.out).write_text(json.dumps(record, indent=2))
    tmp.unlink()
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parties", type=int, choices=sorted(PROTOCOLS), default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="spu.json")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=int, nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    party_main(args) if args.rank is not None else launcher_main(args)


if __name__ == "__main__":
    main()
