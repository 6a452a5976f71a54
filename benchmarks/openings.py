"""Large openings: our links' two paths against gloo's ring all_reduce, same processes.

Run with ``.venv/bin/python benchmarks/openings.py [parties]`` (default 2). It
starts one process per party on loopback, each with one torch thread, and
times, for each size, the median of repeated openings to everyone of a
random int64 tensor:

- ``gloo``: ``torch.distributed.all_reduce`` (what CrypTen uses, and what
  secure_ml used above 32K elements before every message went over the links);
- ``direct``: one exchange over the links (every party sends its tensor to
  every other);
- ``two-step``: the links' reduce-scatter then all-gather (what secure_ml uses
  above 32,768 elements).

It prints one line per size with the medians in milliseconds and each path's
ratio to gloo (below 1: faster than gloo). Results depend on the machine;
nothing here is asserted by a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = (1 << 12, 1 << 15, 1 << 16, 1 << 18, 1 << 20, 1 << 22)


def party(rank: int, parties: int, rendezvous: str) -> None:
    import torch
    import torch.distributed as dist

    from secure_ml.transport import links as links_module
    from secure_ml.transport.links import join

    torch.set_num_threads(1)
    if os.environ.get("CHUNK"):  # to compare chunk sizes: CHUNK=8192 ...
        links_module.PIPELINE_CHUNK_ELEMENTS = int(os.environ["CHUNK"])
    links = join(rank=rank, size=parties, rendezvous=rendezvous, timeout_s=120)
    members = list(range(parties))

    def gloo(x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    paths = {
        "gloo": gloo,
        "direct": lambda x: links.all_reduce(x, members, torch.add, direct=True),
        "two-step": lambda x: links.all_reduce(x, members, torch.add, direct=False),
    }
    for size in SIZES:
        x = torch.randint(-(2**62), 2**62, (size,))
        expected = gloo(x)
        for name, path in paths.items():
            if not torch.equal(path(x), expected):
                raise SystemExit(f"{name} gave a wrong sum at {size} elements")
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(31 if size <= 1 << 18 else 11):  # interleaved: drift hits all alike
            for name, path in paths.items():
                links.barrier(members)
                started = time.perf_counter()
                path(x)
                times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        if rank == 0:
            cells = "  ".join(f"{n} {m:7.2f} ms" for n, m in medians.items())
            ratios = "  ".join(
                f"{n}/gloo {medians[n] / medians['gloo']:.2f}" for n in ("direct", "two-step")
            )
            print(f"{parties} parties {size:>8} elements  {cells}  {ratios}", flush=True)


def main() -> None:
    parties = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as scratch:
        rendezvous = f"file://{scratch}/rendezvous"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--party"]
        children = [
            subprocess.Popen([*command, str(r), str(parties), rendezvous], env=env)
            for r in range(parties)
        ]
        codes = [child.wait(timeout=600) for child in children]
    if any(codes):
        raise SystemExit(f"a party failed: exit codes {codes}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--party":
        party(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
