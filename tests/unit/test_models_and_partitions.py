"""Model zoo, unsupported-layer detection, and the public partitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from secure_ml.data.partition import dirichlet_rows, horizontal_rows
from secure_ml.errors import DataError, SpecError
from secure_ml.models import MLP, SmallCNN, TaskShape, build_model
from secure_ml.sharing.model import blank, check_supported, export, from_architecture


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
