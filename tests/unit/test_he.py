"""CKKS parameters, the HE program of a model, and TenSEAL contexts and ciphertexts.

One secret context (N = 8192, depth 3) is made once for the module; every
ciphertext check runs on it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secure_ml.errors import CiphertextError, SpecError
from secure_ml.models import MLP, LogisticRegression, SmallCNN
from secure_ml.models.he_program import Affine, compile_model, fit_sigmoid
from secure_ml.sharing import he
from secure_ml.sharing.ckks_params import MAX_BITS_128, CKKSParams, choose_params, output_bits
from secure_ml.spec import spec_from_dict

DEPTH3 = CKKSParams(8192, (40, 30, 30, 30, 40), 30)


# ------------------------------------------------------------- parameters --


def test_parameters_come_from_depth_and_value_range_within_128_bit_security():
    small = choose_params(depth=3, level_bits=[2, 5, 9, 10])
    assert small.poly_modulus_degree == 8192 and small.coeff_mod_bit_sizes[1:4] == (30, 30, 30)
    # q0 holds the output: 10 bits above the point, the scale, a sign bit, 2 guard bits
    assert small.coeff_mod_bit_sizes[0] == 43 and small.total_bits <= MAX_BITS_128[8192]
    deep = choose_params(depth=5, level_bits=[2] * 6)
    assert deep.poly_modulus_degree == 16384 and deep.depth == 5
    assert deep.describe()["security_bits"] == 128
    with pytest.raises(SpecError, match=r"depth 5 does not fit.*poly_modulus_degree = 8192"):
        choose_params(depth=5, level_bits=[2] * 6, poly_modulus_degree=8192)
    with pytest.raises(SpecError, match="input_bound"):
        choose_params(depth=3, level_bits=[2, 5, 9, 40])
    assert output_bits([0.3, -1000.0]) == 10 and output_bits([1024.0]) == 11
    assert output_bits([0.5]) == 0


def test_parameters_below_128_bit_security_are_refused():
    with pytest.raises(SpecError, match=r"below 128-bit security: 240 bits.*at most 218"):
        CKKSParams(8192, (60, 60, 60, 60), 40).check_security()
    with pytest.raises(SpecError, match="poly_modulus_degree = 1000"):
        CKKSParams(1000, (30, 30), 20).check_security()
    with pytest.raises(SpecError, match="below 128-bit"):
        CKKSParams.from_message({"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60] * 4,
                                 "scale_bits": 40})  # fmt: skip
    with pytest.raises(SpecError, match="malformed CKKS parameters"):
        CKKSParams.from_message({"poly_modulus_degree": "big"})


# ---------------------------------------------------------------- program --


def _square_mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP(64, 10, (32,), activation="square")


def test_zoo_models_compile_to_affine_maps_and_squares_that_equal_them():
    x = torch.randn(16, 64, dtype=torch.float64)
    program = compile_model(_square_mlp(), (64,))
    assert [type(s).__name__ for s in program.steps] == ["Affine", "Square", "Affine"]
    assert program.depth == 3 and (program.in_features, program.out_features) == (64, 10)
    with torch.no_grad():
        assert torch.allclose(program.evaluate(x), _square_mlp().double()(x), atol=1e-9)
    cnn = SmallCNN((1, 8, 8), 10, channels=2, activation="square")
    images = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    program = compile_model(cnn, (1, 8, 8))
    assert program.depth == 5 and program.in_features == 64
    first = program.steps[0]
    assert isinstance(first, Affine) and first.weight.shape == (2 * 64, 64)
    # im2col: an output pixel of a 3x3 kernel reads at most 9 input pixels
    assert int((first.weight != 0).sum(1).max()) == 9
    with torch.no_grad():
        assert torch.allclose(program.evaluate(images), cnn.double()(images), atol=1e-9)


def test_layers_ckks_cannot_evaluate_and_broken_weights_are_refused():
    with pytest.raises(SpecError, match=r"ReLU cannot be evaluated on CKKS.*activation = 'square'"):
        compile_model(MLP(4, 2, (3,)), (4,))
    broken = _square_mlp()
    broken.layers[0].weight.data[0, 0] = float("nan")
    with pytest.raises(SpecError, match=r"layers\.0\.weight holds NaN"):
        compile_model(broken, (64,))

    class Skip(nn.Module):  # its forward is not the sequence of its layers
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + x

    with pytest.raises(SpecError, match="could not express Skip"):
        compile_model(Skip(), (3,))
    with pytest.raises(SpecError, match="binary model"):
        compile_model(_square_mlp(), (64,), probabilities=True)


def test_worst_case_bounds_hold_and_the_sigmoid_cubic_is_fitted_over_them():
    program = compile_model(_square_mlp(), (64,))
    bounds = program.worst_case_bounds(2.0)
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(2000, 64, generator=generator, dtype=torch.float64) - 0.5).sign() * 2
    assert float(program.evaluate(x).abs().max()) <= bounds[-1]
    assert len(bounds) == program.depth + 1 and bounds[0] == 2.0
    cubic = fit_sigmoid(4.0)
    grid = torch.linspace(-4, 4, 101, dtype=torch.float64)
    t = grid / 4.0  # the cubic reads the logit over its range
    values = cubic.c0 + cubic.c1 * t + cubic.c3 * t**3
    assert cubic.c0 == 0.5 and cubic.max_error < 0.04
    assert float((values - torch.sigmoid(grid)).abs().max()) <= cubic.max_error + 1e-12
    # a wide range keeps coefficients of order one (they must encode at the scale)
    wide = fit_sigmoid(1000.0)
    assert 0.1 < abs(wide.c1) < 10 and 0.1 < abs(wide.c3) < 10
    torch.manual_seed(0)
    model = LogisticRegression(5, 1)
    logreg = compile_model(model, (5,), probabilities=True, input_bound=1.0)
    plain = compile_model(model, (5,))
    logit_bound = plain.worst_case_bounds(1.0)[-1]
    assert logreg.steps[-1].limit == pytest.approx(logit_bound) and logreg.depth == 3
    x = torch.rand(50, 5, dtype=torch.float64) * 2 - 1
    expected = torch.sigmoid(plain.evaluate(x))
    assert (logreg.evaluate(x) - expected).abs().max() <= logreg.steps[-1].max_error + 1e-9


# --------------------------------------------------------------- tenseal --


@pytest.fixture(scope="module")
def secret() -> object:
    return he.new_context(DEPTH3, galois=True)


def test_the_public_context_sent_holds_no_secret_key(secret):
    sent = he.public_context_bytes(secret)
    server = he.read_public_context(sent, DEPTH3, galois=True)
    assert not server.has_secret_key() and server.is_public()
    vector = he.encrypt_columns(server, torch.ones(3, 1))[0]  # encryption needs only the public key
    with pytest.raises(ValueError, match="secret_key"):
        vector.decrypt()
    assert he.context_params(server) == DEPTH3
    # the client's own context is never accepted as a public one
    with pytest.raises(CiphertextError, match="carries its secret key"):
        he.read_public_context(secret.serialize(save_secret_key=True), DEPTH3, galois=True)
    sizes = he.key_sizes(secret)
    assert sizes["galois_keys"] > sizes["relin_keys"] > sizes["public_key"] > 0
    # the size the server accepts before reading: above what is sent, not far above
    limit = he.context_limit(DEPTH3, galois=True)
    assert len(sent) < limit < 4 * len(sent)
    without = he.public_context_bytes(he.new_context(DEPTH3, galois=False))
    assert len(without) < he.context_limit(DEPTH3, galois=False) < 4 * len(without)


def test_malformed_and_mismatched_contexts_and_ciphertexts_are_refused(secret):
    sent = he.public_context_bytes(secret)
    with pytest.raises(CiphertextError, match="context is malformed"):
        he.read_public_context(b"\x00" * 100, DEPTH3, galois=False)
    other = CKKSParams(8192, (50, 30, 30, 30, 50), 30)
    with pytest.raises(CiphertextError, match="does not match the agreed parameters"):
        he.read_public_context(sent, other, galois=False)
    no_galois = he.public_context_bytes(he.new_context(DEPTH3, galois=False))
    with pytest.raises(CiphertextError, match="no Galois keys"):
        he.read_public_context(no_galois, DEPTH3, galois=True)
    good = he.serialize(he.encrypt_columns(secret, torch.ones(4, 1)))[0]
    assert he.read_ciphertext(secret, good, size=4).size() == 4
    with pytest.raises(CiphertextError, match="holds 4 values, expected 5"):
        he.read_ciphertext(secret, good, size=5)
    with pytest.raises(CiphertextError, match="does not parse"):
        he.read_ciphertext(secret, b"\x01" * 64, size=4)
    foreign = he.new_context(CKKSParams(8192, (60, 40, 40, 60), 40), galois=False)
    with pytest.raises(CiphertextError, match="does not parse"):
        he.read_ciphertext(secret, he.serialize(he.encrypt_columns(foreign, torch.ones(4, 1)))[0],
                           size=4)  # fmt: skip
    assert he.ciphertext_limit(DEPTH3) > len(good)


def test_batched_and_per_sample_evaluation_match_the_program(secret):
    model = _square_mlp()
    with torch.no_grad():  # zero rows and weights too small to encode take other paths
        model.layers[0].weight[3] = 0.0
        model.layers[0].weight[4, :10] = 1e-12
        model.layers[2].weight[:, 5] = 0.0
    program = compile_model(model, (64,))
    x = torch.randn(20, 64, dtype=torch.float64).clamp(-2, 2)
    expected = program.evaluate(x)
    server = he.read_public_context(he.public_context_bytes(secret), DEPTH3, galois=True)
    columns = he.encrypt_columns(secret, x)
    answers = he.evaluate_columns(program, columns, server, scale_bits=DEPTH3.scale_bits)
    assert len(answers) == 10
    assert torch.allclose(he.decrypt_columns(answers), expected, atol=0.05)
    rows = he.encrypt_rows(secret, x[:2])
    outputs = [he.evaluate_row(program, row) for row in rows]
    assert torch.allclose(he.decrypt_rows(outputs, 10), expected[:2], atol=0.05)


# ------------------------------------------------------------------- spec --

CLIENT = {"name": "client", "roles": ["data_owner", "receiver"], "crypten": False}
SERVER = {"name": "server", "roles": ["model_owner"], "crypten": False}


def he_spec(**changes: object) -> dict:
    raw = {
        "protocol": {"name": "he.infer", "dealer": "none"},
        "party": [CLIENT, SERVER],
        "data": {"source": "sklearn:digits", "partition": "horizontal"},
        "model": {"kind": "mlp", "hidden": [32], "activation": "square"},
        "he": {},
    }
    for section, values in changes.items():
        if section == "party":
            raw["party"] = values
        else:
            raw.setdefault(section, {}).update(values)
    return raw


def test_an_example_shaped_he_spec_is_accepted():
    checked = spec_from_dict(he_spec(he={"mode": "per_sample", "max_samples": 1}))
    assert (checked.he.mode, checked.he.input_bound, checked.he.max_samples) == (
        "per_sample",
        4.0,
        1,
    )
    assert spec_from_dict(he_spec()).he.poly_modulus_degree == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": {"dealer": "ttp"}}, "set dealer = 'none'"),
        ({"party": [CLIENT, SERVER, {**SERVER, "name": "other"}]}, "exactly two parties"),
        ({"party": [CLIENT, {**SERVER, "roles": ["data_owner"]}]}, "role 'model_owner'"),
        ({"party": [{**CLIENT, "roles": ["data_owner"]}, SERVER]}, "only the client decrypts"),
        ({"party": [CLIENT, {**SERVER, "roles": ["model_owner", "receiver"]}]}, "no other party"),
        ({"party": [CLIENT, {**SERVER, "crypten": True}]}, "server is in it \\(crypten = true\\)"),
        ({"dp": {"epsilon": 1.0, "delta": 1e-5}}, "does not apply differential privacy"),
        ({"data": {"partition": "vertical"}}, "partition = 'horizontal'"),
        ({"data": {"source": "sklearn:nope"}}, "must be one of"),
        ({"he": {"output": "probabilities"}}, "for \\[model\\] kind = 'logreg'"),
        ({"he": {"mode": "fast"}}, "one of 'batched', 'per_sample'"),
        ({"he": {"poly_modulus_degree": 4096}}, "8192, 16384, 32768"),
        ({"he": {"scale_bits": 70}}, "20..50"),
        ({"he": {"input_bound": 0}}, "input_bound"),
    ],
)
def test_bad_he_specs_are_refused(changes, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict(he_spec(**changes))


# --------------------------------------------------- range and hostile peers --


def test_an_output_exactly_at_its_worst_case_bound_decrypts_with_its_sign():
    model = LogisticRegression(256, 1)
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
        model.linear.bias.zero_()
    program = compile_model(model, (256,), input_bound=4.0)
    bounds = program.worst_case_bounds(4.0)
    assert bounds[-1] == 1024.0  # 2^10 exactly: it needs 11 bits above the point
    params = choose_params(depth=1, level_bits=[output_bits([b]) for b in bounds])
    context = he.new_context(params, galois=False)
    x = torch.full((2, 256), 4.0, dtype=torch.float64)
    x[1] = -4.0
    answers = he.evaluate_columns(
        program, he.encrypt_columns(context, x), context, scale_bits=params.scale_bits
    )
    got = he.decrypt_columns(answers)[:, 0]
    # the right sign, off only by the scale's drift (2^60 / q1 is not exactly 2^30)
    assert torch.allclose(got, torch.tensor([1024.0, -1024.0], dtype=torch.float64), rtol=1e-4)


def test_only_fresh_ciphertexts_are_accepted_and_answers_are_rerandomised(secret):
    (fresh,) = he.encrypt_columns(secret, torch.ones(4, 1))
    assert he.read_ciphertext(secret, fresh.serialize(), size=4, fresh=True).size() == 4
    lower = fresh * 1.0  # rescaled: one level down
    with pytest.raises(CiphertextError, match="not a fresh encryption"):
        he.read_ciphertext(secret, lower.serialize(), size=4, fresh=True)
    unrelinearised = secret.copy()
    unrelinearised.auto_relin = False
    (three,) = he.encrypt_columns(unrelinearised, torch.ones(4, 1))
    with pytest.raises(CiphertextError, match="not a fresh encryption"):
        he.read_ciphertext(secret, (three * three).serialize(), size=4, fresh=True)
    (again,) = he.rerandomised(secret, [lower])
    assert again.serialize() != lower.serialize()
    values = torch.tensor(again.decrypt(), dtype=torch.float64)
    assert torch.allclose(values, torch.ones(4, dtype=torch.float64), atol=1e-3)


def test_announcements_and_plans_out_of_bounds_are_refused():
    from secure_ml.protocols.he_infer import read_plan, read_shape

    assert read_shape({"shape": [64], "samples": 3}) == ((64,), 3)
    with pytest.raises(CiphertextError, match="is refused"):
        read_shape({"shape": [100_000], "samples": 1})
    with pytest.raises(CiphertextError, match="is refused"):
        read_shape({"shape": [64], "samples": 10**9})
    with pytest.raises(CiphertextError, match="malformed"):
        read_shape({"shape": [64], "samples": -1})
    plan = {"params": DEPTH3.to_message(), "depth": 3, "out_features": 10, "in_features": 64}
    assert read_plan(plan, 64) == (DEPTH3, 3, 10)
    with pytest.raises(CiphertextError, match="we send 63"):
        read_plan(plan, 63)
    with pytest.raises(CiphertextError, match="exceeds the chain"):
        read_plan({**plan, "depth": 4}, 64)
    with pytest.raises(CiphertextError, match="returns 100000"):
        read_plan({**plan, "out_features": 100_000}, 64)
