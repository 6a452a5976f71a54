"""The environment contract of one party process.

A party is told who it is and where to meet the others through environment
variables, as with torchrun: ``RANK``, ``WORLD_SIZE`` (compute parties only;
the dealer is rank ``WORLD_SIZE``), and either ``RENDEZVOUS`` (any
torch.distributed init method, e.g. ``tcp://10.0.0.1:29500`` or
``file:///shared/rdzv``) or ``MASTER_ADDR`` and ``MASTER_PORT``. Command-line
flags (``--rank``, ``--master-addr``, ``--master-port``) take precedence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from secure_ml.errors import SpecError


@dataclass(frozen=True)
class PartyEnv:
    rank: int
    world_size: int | None
    rendezvous: str


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
    if master_addr or master_port:
        if not (master_addr and master_port):
            raise SpecError("--master-addr and --master-port go together")
        rendezvous = f"tcp://{master_addr}:{master_port}"
    elif env.get("RENDEZVOUS"):
        rendezvous = env["RENDEZVOUS"]
    elif env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        rendezvous = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    else:
        raise SpecError(
            "no rendezvous: pass --master-addr/--master-port, or set RENDEZVOUS "
            "(e.g. tcp://host:29500) or MASTER_ADDR and MASTER_PORT"
        )
    return PartyEnv(rank=rank, world_size=_int(env, "WORLD_SIZE"), rendezvous=rendezvous)


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
