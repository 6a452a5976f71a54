"""The environment contract of one party process.

A party is told who it is and where to meet the others through environment
variables, as with torchrun: ``RANK``, ``WORLD_SIZE`` (optional, checked
against the spec: the number of processes the launcher started, see below),
and either ``RENDEZVOUS`` (any torch.distributed init method, e.g.
``tcp://10.0.0.1:29500`` or ``file:///shared/rdzv``) or ``MASTER_ADDR`` and
``MASTER_PORT``. Command-line flags (``--rank``, ``--master-addr``,
``--master-port``) take precedence.

Ranks are the spec's (``secure-ml spec check`` lists them): the compute
parties first, then the dealer, then any party outside CrypTen's world.
``WORLD_SIZE`` counts every process of the run (torchrun's count), or only
the compute parties (CrypTen's count, which ``secure-ml run`` sets; the dealer
is then rank ``WORLD_SIZE``). A process started by torchrun
(``TORCHELASTIC_RUN_ID`` set, rendezvous from ``MASTER_ADDR``/``MASTER_PORT``)
takes the first reading only, so too few or too many processes fail at once.

Under torchrun, ``MASTER_ADDR:MASTER_PORT`` is a store the elastic agent
already hosts (``TORCHELASTIC_USE_AGENT_STORE=True``); rank 0 then joins it as
a client instead of binding the port again (``secure_ml.transport.rendezvous``).
Keep that endpoint: no ``--master-addr``/``--master-port`` under torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from secure_ml.errors import SpecError


@dataclass(frozen=True)
class PartyEnv:
    rank: int
    world_size: int | None
    rendezvous: str
    #: started by torchrun and meeting at its MASTER_ADDR:MASTER_PORT: WORLD_SIZE
    #: counts every process (not so for `secure-ml run` started under torchrun)
    torchrun: bool = False

    def check(self, names: Sequence[str], compute: int) -> None:
        """Fail unless the rank and ``WORLD_SIZE`` fit a run of these processes.

        ``names``: every process of the spec in rank order; ``compute``: how
        many of them are compute parties.
        """
        n = len(names)
        listed = ", ".join(f"{rank} {name}" for rank, name in enumerate(names))
        if not 0 <= self.rank < n:
            raise SpecError(f"rank {self.rank}: the spec has ranks 0..{n - 1} ({listed})")
        if self.world_size is None:
            return
        if self.torchrun and self.world_size != n:
            raise SpecError(
                f"torchrun started {self.world_size} processes (WORLD_SIZE) but the spec "
                f"has {n}, one per rank ({listed}): start nnodes x nproc-per-node = {n}"
            )
        if self.world_size not in (n, compute):
            counts = f"{n}" if n == compute else f"{n} (or its {compute} compute parties)"
            raise SpecError(
                f"WORLD_SIZE={self.world_size} but the spec has {n} processes ({listed}): "
                f"WORLD_SIZE counts {counts}, one process per rank"
            )


def _int(env: Mapping[str, str], key: str) -> int | None:
    raw = env.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise SpecError(f"environment variable {key}={raw!r}: expected an integer") from None


def read_party_env(
    env: Mapping[str, str] | None = None,
    *,
    rank: int | None = None,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> PartyEnv:
    """Combine flags and environment into this party's rank and rendezvous."""
    env = os.environ if env is None else env
    rank = rank if rank is not None else _int(env, "RANK")
    if rank is None:
        raise SpecError("no rank given: pass --rank R or set RANK")
    torchrun = False
    if master_addr or master_port:
        if not (master_addr and master_port):
            raise SpecError("--master-addr and --master-port go together")
        rendezvous = f"tcp://{master_addr}:{master_port}"
    elif env.get("RENDEZVOUS"):
        rendezvous = env["RENDEZVOUS"]
    elif env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        rendezvous = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
        torchrun = bool(env.get("TORCHELASTIC_RUN_ID"))
    else:
        raise SpecError(
            "no rendezvous: pass --master-addr/--master-port, or set RENDEZVOUS "
            "(e.g. tcp://host:29500) or MASTER_ADDR and MASTER_PORT"
        )
    return PartyEnv(
        rank=rank,
        world_size=_int(env, "WORLD_SIZE"),
        rendezvous=rendezvous,
        torchrun=torchrun,
    )


def party_env_vars(*, rank: int, world_size: int, rendezvous: str) -> dict[str, str]:
    """The variables the local launcher sets for one child process."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "RENDEZVOUS": rendezvous,
        # one torch thread per party: on a small machine parties otherwise
        # fight over cores (the Session sets torch's count from [launch] too)
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        # every process of a local run binds to loopback, whatever this host's
        # name resolves to: its traffic never leaves the host, and the channel
        # handshake can tell (no encryption needed on trusted loopback)
        "GLOO_SOCKET_IFNAME": "lo",
    }
