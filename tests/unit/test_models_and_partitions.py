"""Model zoo, unsupported-layer detection, and the public partitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from secure_ml.data.partition import dirichlet_rows, horizontal_rows
from secure_ml.errors import DataError, SpecError
from secure_ml.models import ACTIVATIONS, MLP, SmallCNN, Square, TaskShape, build_model
from secure_ml.sharing.model import (
    blank,
    check_supported,
    export,
    from_architecture,
    to_crypten,
)
from secure_ml.spec import spec_from_dict


@pytest.mark.parametrize(
    ("kind", "shape", "out"),
    [("logreg", (30,), 1), ("linreg", (10,), 1), ("mlp", (64,), 10), ("cnn", (1, 28, 28), 10)],
)
def test_built_in_models_fit_their_task(kind, shape, out):
    model = build_model(kind, TaskShape(shape, out), seed=0)
    assert model(torch.zeros(2, *shape)).shape == (2, out)
    # the same seed gives the same public initial weights on every party
    again = build_model(kind, TaskShape(shape, out), seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_cnn_refuses_tabular_data_and_unknown_kinds_are_named():
    with pytest.raises(SpecError, match="cnn"):
        build_model("cnn", TaskShape((30,), 2), seed=0)
    with pytest.raises(SpecError, match="kind = 'transformer'"):
        build_model("transformer", TaskShape((30,), 2), seed=0)


def test_unsupported_layers_are_all_listed_at_once():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.LayerNorm(4), nn.ELU())
    with pytest.raises(SpecError, match="Elu, LayerNormalization, Tanh"):
        check_supported(model, (4,))
    check_supported(MLP(4, 2, (8,)), (4,))
    check_supported(SmallCNN((3, 8, 8), 2), (3, 8, 8))


def test_blank_architecture_keeps_the_graph_and_hides_every_weight():
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 2))
    real = export(model.eval(), (3, 8, 8))
    hidden = blank(real)
    real_graph, blank_graph = (onnx.load_model_from_string(b).graph for b in (real, hidden))
    assert [n.op_type for n in real_graph.node] == [n.op_type for n in blank_graph.node]
    assert all(not numpy_helper.to_array(t).any() for t in blank_graph.initializer)
    names = lambda m: [n for n, _ in m.named_parameters()]  # noqa: E731
    assert names(from_architecture(real)) == names(from_architecture(hidden))


def test_square_is_x_times_x_and_has_no_parameters():
    x = torch.linspace(-3, 3, 13, requires_grad=True)
    out = Square()(x)
    assert torch.equal(out, x * x)
    out.sum().backward()
    assert torch.allclose(x.grad, 2 * x.detach())
    assert list(Square().state_dict()) == []
    assert ACTIVATIONS == ("relu", "square")


@pytest.mark.parametrize(
    ("kind", "shape", "module"), [("mlp", (6,), "layers"), ("cnn", (1, 8, 8), "features")]
)
def test_square_activation_keeps_state_dict_keys_and_initial_weights(kind, shape, module):
    relu = build_model(kind, TaskShape(shape, 3), seed=0, hidden=(5, 4))
    square = build_model(kind, TaskShape(shape, 3), seed=0, hidden=(5, 4), activation="square")
    assert list(square.state_dict()) == list(relu.state_dict())
    for key, value in relu.state_dict().items():
        assert torch.equal(square.state_dict()[key], value), key
    # a ReLU state_dict loads into the square model (and back), layer for layer
    square.load_state_dict(relu.state_dict())
    squares = [m for m in getattr(square, module) if isinstance(m, Square)]
    assert len(squares) == 2 and not any(isinstance(m, nn.ReLU) for m in square.modules())
    assert square(torch.ones(2, *shape)).shape == (2, 3)
    # the classes take it directly too
    assert isinstance(MLP(6, 3, (5,), "square").layers[1], Square)
    assert isinstance(SmallCNN((1, 8, 8), 3, 4, activation="square").features[1], Square)


def test_build_model_activation_is_checked_and_ignored_by_linear_models():
    for kind in ("logreg", "linreg"):
        linear = build_model(kind, TaskShape((4,), 1), seed=0, activation="square")
        assert not any(isinstance(m, Square) for m in linear.modules())
    with pytest.raises(
        SpecError, match=r"\[model\] activation = 'tanh': must be one of relu, square"
    ):
        build_model("mlp", TaskShape((4,), 2), seed=0, activation="tanh")
    with pytest.raises(SpecError, match=r"\[model\] activation = 'square'.*resnet18"):
        build_model("torchvision:resnet18", TaskShape((3, 32, 32), 10), seed=0,
                    activation="square")  # fmt: skip


def test_square_mlp_converts_to_crypten_and_computes_the_same():
    """CrypTen's ONNX import runs the Square node (Pow with a public exponent);
    ``x * x`` as Mul(x, x) would leave crypten's graph unable to run it."""
    import onnx

    torch.manual_seed(0)
    model = MLP(4, 3, (5, 5), activation="square").eval()
    check_supported(model, (4,))
    graph = onnx.load_model_from_string(export(model, (4,))).graph
    assert all(len(set(n.input)) == len(n.input) for n in graph.node)  # no Mul(x, x)
    assert [n.op_type for n in graph.node].count("Pow") == 2
    x = torch.randn(7, 4)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(to_crypten(model, (4,))(x), expected, atol=1e-5)
        assert torch.allclose(from_architecture(export(model, (4,)))(x), expected, atol=1e-5)
    names = lambda m: [n for n, _ in m.named_parameters()]  # noqa: E731
    assert names(from_architecture(blank(export(model, (4,))))) == [
        f"{n}.data" for n, _ in model.named_parameters()
    ]


def model_spec(model: dict, **sections) -> dict:
    return {
        "protocol": {"name": "mpc.train"},
        "party": [
            {"name": "a", "roles": ["data_owner"]},
            {"name": "b", "roles": ["data_owner", "label_owner", "receiver"]},
        ],
        "data": {"source": "sklearn:breast_cancer"},
        "model": model,
        **sections,
    }


def test_spec_activation_is_validated_and_keeps_old_hashes():
    square = spec_from_dict(model_spec({"kind": "mlp", "activation": "square"}))
    assert square.model.activation == "square"
    default = spec_from_dict(model_spec({"kind": "mlp"}))
    assert default.model.activation == "relu"
    # the default is left out of the hash: specs from before the key keep theirs
    assert spec_from_dict(model_spec({"kind": "mlp", "activation": "relu"})).hash == default.hash
    assert square.hash != default.hash
    with pytest.raises(
        SpecError, match=r"\[model\]: activation = 'tanh': must be one of 'relu', 'square'"
    ):
        spec_from_dict(model_spec({"kind": "mlp", "activation": "tanh"}))
    with pytest.raises(SpecError, match=r"\[model\]: activation = 1: expected str"):
        spec_from_dict(model_spec({"kind": "mlp", "activation": 1}))


def test_dp_sgd_and_resnet_refuse_square_activations():
    dp = {"dp": {"epsilon": 1.0, "delta": 1e-5}}
    with pytest.raises(SpecError, match=r"\[model\]: activation = 'square': DP-SGD on shares"):
        spec_from_dict(model_spec({"kind": "mlp", "activation": "square"}, **dp))
    spec_from_dict(model_spec({"kind": "mlp", "activation": "relu"}, **dp))
    infer = model_spec({"kind": "torchvision:resnet18", "activation": "square"})
    infer["protocol"]["name"] = "mpc.infer"
    infer["party"] = [{"name": "a", "roles": ["model_owner"]},
                      {"name": "b", "roles": ["data_owner", "receiver"]}]  # fmt: skip
    infer["data"] = {"source": "sklearn:breast_cancer", "partition": "horizontal"}
    with pytest.raises(SpecError, match=r"\[model\]: activation = 'square': kind = 'torchvision"):
        spec_from_dict(infer)


class ScaledLinear(nn.Module):
    """A checkpoint with a registered buffer and plain tensor attributes in forward."""

    def __init__(self, n_in: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, 1)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, n_in))
        self.offset = torch.linspace(-0.3, 0.3, n_in)  # a plain attribute: exported as Constant
        self.divisor = torch.full((n_in,), 1.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x * self.scale + self.offset) / self.divisor) ** 2 + 0.25


def graph_tensors(graph) -> list:
    from onnx import numpy_helper

    found = [numpy_helper.to_array(t) for t in graph.initializer]
    for node in graph.node:
        found += [numpy_helper.to_array(a.t) for a in node.attribute if a.HasField("t")]
    return found


def test_blank_architecture_hides_buffers_and_constants_and_still_computes():
    import onnx

    torch.manual_seed(0)
    model = ScaledLinear(6).eval()
    real = export(model, (6,))
    hidden = onnx.load_model_from_string(blank(real)).graph
    secrets = [model.scale, model.offset, model.divisor, 1 / model.divisor,
               model.linear.weight, torch.tensor(0.25)]  # fmt: skip
    for tensor in graph_tensors(hidden):
        for secret in secrets:
            value = secret.detach().numpy()
            assert not (tensor.shape == value.shape and np.allclose(tensor, value)), value
    # before the fix: offset, divisor and 0.25 travelled as Constant nodes
    assert {n.op_type for n in hidden.node} <= {"Mul", "Add", "Gemm", "Pow", "Constant"}
    kept = [t for t in graph_tensors(hidden) if t.dtype.kind == "f" and t.any()]
    assert [float(t) for t in kept] == [2.0]  # the exponent of ** 2: an op parameter
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.allclose(from_architecture(real)(x), model(x), atol=1e-5)
    names = lambda m: [n for n, _ in m.named_parameters()]  # noqa: E731
    assert names(from_architecture(real)) == names(from_architecture(blank(real)))


def test_horizontal_rows_cover_every_row_once():
    parts = horizontal_rows(101, 3, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(101))
    assert [len(p) for p in parts] == [34, 34, 33]


def test_dirichlet_rows_are_a_non_iid_partition():
    labels = np.repeat(np.arange(10), 100)
    parts = dirichlet_rows(labels, 3, alpha=0.3, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    histograms = np.array([np.bincount(labels[p], minlength=10) for p in parts])
    # small alpha: each owner's class mix is far from uniform
    assert (histograms.max(axis=1) / histograms.sum(axis=1) > 0.2).all()
    assert dirichlet_rows(labels, 3, alpha=0.3, seed=0)[0].tolist() == parts[0].tolist()


def test_dirichlet_with_too_few_rows_names_alpha():
    with pytest.raises(DataError, match=r"alpha = 0\.01"):
        dirichlet_rows(np.array([0, 1]), 5, alpha=0.01, seed=0)
