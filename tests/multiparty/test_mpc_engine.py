"""The [mpc] optimisations on real processes: same values, fewer rounds.

Each body runs with the optimisation on and off, under 2PC, 3PC and TTP, and
the two runs must open the same values (exactly, where no fixed-point
rounding is involved) while the counters move the way the design says.
"""

from __future__ import annotations

import pytest
import torch
from mpkit import ALL_OFF, WORLDS, make_spec, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(240)]


def public_values(seed: int, *shape: int) -> torch.Tensor:
    """Test values every party can rebuild (the test checks against them)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def counters(session) -> tuple[int, float]:
    stats = session.crypten.communicator.get().get_communication_stats()
    return int(stats["rounds"]), float(stats["bytes"])


# ------------------------------------------------------------ p2p openings --


def openings(session):
    """Open to all, to one party, and a binary (XOR-shared) comparison."""
    x = session.share(public_values(0, 6, 3) if session.rank == 0 else None, owner="p0")
    last = session.world_size - 1
    before = counters(session)
    to_all = x.get_plain_text()
    after_all = counters(session)
    to_last = x.get_plain_text(dst=last)
    after_one = counters(session)
    signs = (x > 0).get_plain_text()
    return {
        "p2p": session.crypten.communicator.get().p2p_open,
        "to_all": to_all,
        "to_last": to_last,
        "signs": signs,
        "rounds_all": after_all[0] - before[0],
        "bytes_all": after_all[1] - before[1],
        "rounds_one": after_one[0] - after_all[0],
        "bytes_one": after_one[1] - after_all[1],
    }


def test_p2p_openings_match_gloo_collectives(world, tmp_path):
    fast = run_parties(openings, make_spec(world), tmp_path / "p2p")
    slow = run_parties(openings, make_spec(world, mpc={"p2p_open": False}), tmp_path / "gloo")
    expected = public_values(0, 6, 3)
    n = len(fast)
    for name in fast:
        a, b = fast[name], slow[name]
        assert a["p2p"] and not b["p2p"]
        assert torch.allclose(a["to_all"], expected, atol=1e-4)
        assert torch.equal(a["to_all"], b["to_all"]) and torch.equal(a["signs"], b["signs"])
        assert torch.equal(a["signs"], (expected > 0).float())
        # one exchange is one round, counted in CrypTen's convention
        assert a["rounds_all"] == b["rounds_all"] == 1
        assert a["bytes_all"] == 8 * 2 * (n - 1) * expected.nelement()
        assert a["rounds_one"] == b["rounds_one"] == 1
        assert a["bytes_one"] == b["bytes_one"]
    last = sorted(fast)[-1]
    assert torch.equal(fast[last]["to_last"], fast[last]["to_all"])
    assert all(fast[name]["to_last"] is None for name in sorted(fast)[:-1])
    if n == 2:  # two parties: the exchange moves exactly what all_reduce is counted as
        assert all(fast[name]["bytes_all"] == slow[name]["bytes_all"] for name in fast)


def large_opening(session):
    from secure_ml.transport.links import DIRECT_MAX_ELEMENTS

    values = public_values(1, DIRECT_MAX_ELEMENTS + 1)
    x = session.share(values if session.rank == 0 else None, owner="p0")
    before = counters(session)
    opened = x.get_plain_text()
    return {"ok": torch.allclose(opened, values, atol=1e-4),
            "bytes": counters(session)[1] - before[1], "n": values.nelement()}  # fmt: skip


def test_large_openings_take_the_two_step_path(tmp_path):
    results = run_parties(large_opening, make_spec("3pc"), tmp_path)
    for r in results.values():
        # reduce-scatter then all-gather (n = 3 * 10923: equal slices): a party
        # sends the 2 slices it does not own and receives 2 copies of its own,
        # then sends its combined slice twice and receives the 2 others
        own = r["n"] // 3
        assert r["ok"] and r["bytes"] == 8 * (2 * (r["n"] - own) + 2 * 2 * own)


# ------------------------------------------------------ batched products --


def two_products(session):
    """Two independent matmuls, one by one and then batched."""
    from secure_ml.sharing.batched import products

    shared = [
        session.share(public_values(i, *shape) if session.rank == 0 else None, owner="p0")
        for i, shape in enumerate([(4, 5), (5, 2), (3, 4), (4, 6)])
    ]
    pairs = [(shared[0], shared[1]), (shared[2], shared[3])]
    start = counters(session)
    one_by_one = [x.matmul(y) for x, y in pairs]
    middle = counters(session)
    together = products("matmul", pairs)
    end = counters(session)
    return {
        "one_by_one": [p.get_plain_text() for p in one_by_one],
        "together": [p.get_plain_text() for p in together],
        "rounds_saved": (middle[0] - start[0]) - (end[0] - middle[0]),
    }


def test_batched_products_need_one_opening_less(world, tmp_path):
    results = run_parties(two_products, make_spec(world), tmp_path)
    v = [public_values(i, *s) for i, s in enumerate([(4, 5), (5, 2), (3, 4), (4, 6)])]
    expected = [v[0] @ v[1], v[2] @ v[3]]
    for r in results.values():
        for made, plain in zip(r["together"], expected, strict=True):
            assert torch.allclose(made, plain, atol=1e-3)
        for made, plain in zip(r["one_by_one"], expected, strict=True):
            assert torch.allclose(made, plain, atol=1e-3)
        # the same triples and truncations; one opening instead of two
        assert r["rounds_saved"] == 1


# ------------------------------------------------------------- precompute --

STEPS = 4


def repeated_steps(session):
    """The same shaped step four times; dealer requests counted per step."""
    provider = session.crypten.mpc.get_default_provider()
    x = session.share(public_values(7, 8, 3) if session.rank == 0 else None, owner="p0")
    w = session.share(public_values(8, 3, 1) if session.rank == 0 else None, owner="p0")
    live, rounds, outputs = [], [], []
    for step in range(STEPS):
        before = counters(session)[0]
        with session.step("demo", STEPS - step):
            out = (x.matmul(w)).sigmoid()
        rounds.append(counters(session)[0] - before)
        live.append(getattr(provider, "live_requests", None))
        outputs.append(out.get_plain_text())
    return {"live": live, "rounds": rounds, "outputs": outputs}


@pytest.mark.parametrize("precompute", [True, False], ids=["precompute", "live"])
def test_precomputed_tuples_leave_no_dealer_round_trip(world, precompute, tmp_path):
    spec = make_spec(world, mpc={"precompute": precompute})
    results = run_parties(repeated_steps, spec, tmp_path)
    expected = torch.sigmoid(public_values(7, 8, 3) @ public_values(8, 3, 1))
    for r in results.values():
        for out in r["outputs"]:
            assert torch.allclose(out, expected, atol=0.01)
    party0 = results["p0"]
    if WORLDS[world]["dealer"] != "ttp" or not precompute:
        # nothing to precompute (the first party makes the triples) or switched off
        assert all(n is None for n in party0["live"])
        return
    traced, *later = party0["live"]
    assert traced > 0, "the first step is traced and served live"
    assert later == [traced] * (STEPS - 1), "later steps must take every tuple from the pool"
    # party 0's rounds drop by the dealer round trips (3 messages per tuple);
    # the second step also carries the bulk exchange: one request, one answer
    assert party0["rounds"][2] == party0["rounds"][0] - 3 * traced
    assert party0["rounds"][1] == party0["rounds"][2] + 2


# ------------------------------------------------------- fast config ----


def config_reads(session):
    cfg = session.crypten.cfg
    with cfg.temp_override({"functions.exp_iterations": 3}):
        inside = cfg.functions.exp_iterations
    return {
        "provider": cfg.mpc.provider,
        "verbose": cfg["communicator.verbose"],
        "inside": inside,
        "after": cfg.functions.exp_iterations,
        "fast": type(cfg).__name__,
    }


def test_fast_config_reads_what_crypten_config_holds(tmp_path):
    fast = run_parties(config_reads, make_spec("ttp"), tmp_path / "fast")
    slow = run_parties(config_reads, make_spec("ttp", mpc=ALL_OFF), tmp_path / "slow")
    for name in fast:
        a, b = dict(fast[name]), dict(slow[name])
        assert (a.pop("fast"), b.pop("fast")) == ("FastCrypTenConfig", "CrypTenConfig")
        assert a == b == {"provider": "TTP", "verbose": True, "inside": 3, "after": 8}


# ------------------------------------------------------ object accounting --

OBJECT = {"requests": [("additive", (i, i + 1)) for i in range(500)]}


def object_bytes(session):
    comm = session.crypten.communicator.get()
    before = counters(session)[1]
    if session.rank == 0:
        comm.send_obj(OBJECT, 1)
    elif session.rank == 1:
        assert comm.recv_obj(0) == OBJECT
    return counters(session)[1] - before


def test_objects_are_counted_by_the_bytes_that_travel(tmp_path):
    from secure_ml.transport.objects import encode

    counted = run_parties(object_bytes, make_spec("2pc"), tmp_path)
    # CrypTen's own count would be sys.getsizeof(OBJECT): ~200 bytes for any dict;
    # what travels is the message and its int64 length
    assert counted == {"p0": len(encode(OBJECT)) + 8, "p1": len(encode(OBJECT)) + 8}
