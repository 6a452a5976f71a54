"""Masks come from ChaCha20 key streams, never from a torch generator (real processes).

Three parties and the TTP dealer (the quickstart's setting) share values,
multiply them (dealer triples, live and precomputed in bulk), compare them
(binary triples, B2A, wraps) and draw sharings of zero, while every torch
random function is instrumented. Every draw of mask material through a torch
generator is recorded, and so is any change of a torch generator's state.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from mpkit import run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(240)]

N_PARTIES = 3
TORCH_DRAWS = ("randint", "rand", "randn", "randperm", "normal", "bernoulli", "multinomial")
TENSOR_DRAWS = ("random_", "uniform_", "normal_", "bernoulli_", "exponential_")
STEPS = 3


def public_values(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@contextmanager
def torch_draws_recorded(calls: list[str]):
    """Record every call of torch's random functions (by name and generator type)."""
    targets = [(torch, name) for name in TORCH_DRAWS] + [(torch.Tensor, n) for n in TENSOR_DRAWS]
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def recording(name, original):
        def draw(*args, **kwargs):
            calls.append(f"{name}(generator={type(kwargs.get('generator')).__name__})")
            return original(*args, **kwargs)

        return draw

    for owner, name, original in originals:
        setattr(owner, name, recording(name, original))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def crypten_generators(crypten) -> dict:
    """Every generator CrypTen draws masks from (and its public 'global' one)."""
    found = {name: by_device[torch.device("cpu")] for name, by_device in crypten.generators.items()}
    found["dealer"] = crypten.mpc.provider.ttp_provider.TTPClient.get().generator
    return found


def torch_states(generators: dict) -> dict:
    return {n: g.get_state() for n, g in generators.items() if isinstance(g, torch.Generator)}


def masked_computation(session):
    crypten = session.crypten
    primitives = crypten.mpc.primitives
    generators = crypten_generators(crypten)
    before = torch_states(generators)
    calls: list[str] = []
    everyone = [p.name for p in session.roster.parties]
    mine = public_values(session.rank, *((3, 2) if session.rank == 2 else (4, 3)))
    with torch_draws_recorded(calls):
        x = session.share(mine if session.rank == 0 else None, owner="p0")
        y = session.share(mine if session.rank == 1 else None, owner="p1")
        w = session.share(mine if session.rank == 2 else None, owner="p2")
        products = []
        for step in range(STEPS):  # later steps take precomputed (bulk) dealer tuples
            with session.step("product", STEPS - step):
                products.append(session.reveal(x * y, to=everyone, name="x*y"))
        matmul = session.reveal(x.matmul(w), to=everyone, name="x@w")
        greater = session.reveal(x > y, to=everyone, name="x>y")
        zero_a = primitives.ArithmeticSharedTensor.PRZS((64,)).share
        zero_b = primitives.BinarySharedTensor.PRZS((64,)).share
    after = torch_states(generators)
    return {
        "calls": calls,
        "changed": sorted(n for n in before if not torch.equal(before[n], after[n])),
        "types": {n: type(g).__name__ for n, g in generators.items()},
        "fingerprints": {n: getattr(g, "fingerprint", None) for n, g in generators.items()},
        "key_bits": {n: getattr(g, "key_bits", 0) for n, g in generators.items()},
        "products": products,
        "matmul": matmul,
        "greater": greater,
        "zero_a": zero_a,
        "zero_b": zero_b,
    }


def test_no_torch_generator_draws_mask_material(tmp_path):
    spec = {
        "protocol": {"name": "python", "dealer": "ttp", "seed": 0},
        "party": [{"name": f"p{i}", "roles": ["data_owner"]} for i in range(N_PARTIES)],
        "launch": {"collective_timeout": 60, "heartbeat_timeout": 20},
    }
    results = run_parties(masked_computation, spec, tmp_path)
    parties = [results[f"p{i}"] for i in range(N_PARTIES)]
    for name, got in results.items():
        assert got["calls"] == [], f"{name} drew from torch: {got['calls'][:5]}"
        assert got["changed"] == [], f"{name}: torch generators {got['changed']} were drawn from"
        assert got["types"] == {
            "prev": "KeyStream",
            "next": "KeyStream",
            "local": "KeyStream",
            "dealer": "KeyStream",
            "global": "Generator",  # public by design: every party holds it
        }
    # keys: 256 bits each; each pairwise key is known to exactly its two parties
    for rank, got in enumerate(parties):
        assert all(got["key_bits"][n] >= 128 for n in ("prev", "next", "local", "dealer"))
        previous = parties[(rank - 1) % N_PARTIES]
        assert got["fingerprints"]["prev"] == previous["fingerprints"]["next"]
    keys = [got["fingerprints"][n] for got in parties for n in ("next", "local", "dealer")]
    assert len(set(keys)) == len(keys) == 3 * N_PARTIES
    # sharings of zero still sum (XOR) to zero, from shares that are not zero
    zero_a = sum(got["zero_a"] for got in parties)
    zero_b = parties[0]["zero_b"] ^ parties[1]["zero_b"] ^ parties[2]["zero_b"]
    assert torch.equal(zero_a, torch.zeros(64, dtype=torch.long))
    assert torch.equal(zero_b, torch.zeros(64, dtype=torch.long))
    assert all(bool((got["zero_a"] != 0).all()) for got in parties)
    # products (live and precomputed dealer tuples), a matmul and a comparison are right
    x, y, w = public_values(0, 4, 3), public_values(1, 4, 3), public_values(2, 3, 2)
    for got in parties:
        for product in got["products"]:
            assert torch.allclose(product, x * y, atol=1e-3)
        assert torch.allclose(got["matmul"], x @ w, atol=1e-3)
        assert torch.equal(got["greater"], (x > y).float())
