"""Each compat patch, with a check that fails without it."""

from __future__ import annotations

import subprocess
import sys

import torch

from secure_ml.compat import load_crypten
from secure_ml.compat.decode import exact_decode


def test_crypten_imports_on_this_torch_and_leaves_torch_namespace_clean():
    code = (
        "import sys; from secure_ml.compat import load_crypten; c = load_crypten(); "
        "print(c.__version__, 'torch.onnx._internal.registration' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["0.4.1", "False"]


def test_decode_is_exact_for_values_just_above_negative_integers():
    crypten = load_crypten()
    encoder = crypten.encoder.FixedPointEncoder()
    values = torch.tensor([-6.99998, -1.00001, -0.99999, -3.5, -0.00002, 0.0, 2.75, 1e4])
    decoded = encoder.decode(encoder.encode(values))
    # the unpatched decode returns -8.0 for -6.99998: off by a whole 1.0
    assert torch.allclose(decoded, values, atol=2e-5)


def test_exact_decode_matches_integer_division_on_random_ring_elements():
    ints = torch.randint(-(2**40), 2**40, (10_000,))
    expected = ints.double() / 2**16
    assert torch.equal(exact_decode(ints, 2**16).double(), expected.float().double())


def test_crypten_load_reads_back_saved_shares_under_weights_only(tmp_path):
    crypten = load_crypten()
    from crypten.mpc.primitives.arithmetic import ArithmeticSharedTensor

    # a share object built without a communicator: the sentinel source skips sharing
    share = ArithmeticSharedTensor(src=-1)
    share.share = torch.arange(6).reshape(2, 3)
    share.encoder = crypten.encoder.FixedPointEncoder()
    path = tmp_path / "share.pt"
    torch.save(share, path)
    loaded = crypten.load(str(path))  # torch.load(weights_only=True) underneath
    assert torch.equal(loaded.share, share.share)


def test_from_pytorch_converts_linear_relu_sigmoid_flatten():
    crypten = load_crypten()
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(8, 4), torch.nn.ReLU(),
        torch.nn.Linear(4, 2), torch.nn.Sigmoid(),
    )  # fmt: skip
    converted = crypten.nn.from_pytorch(model, torch.zeros(1, 2, 4))
    kinds = {type(m).__name__ for m in converted.modules()}
    assert {"Flatten", "Gemm", "ReLU", "Sigmoid"} <= kinds


def test_from_pytorch_knows_identity_nodes():
    crypten = load_crypten()
    converter = crypten.nn.onnx_converter
    identity = converter._get_operator_class("Identity", {})
    assert identity.from_onnx() is not None
