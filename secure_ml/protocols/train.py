"""``mpc.train``: logistic regression trained on secret-shared, vertically split data.

Parties: two or more data owners, each holding some feature columns of the
same rows; one label owner holding the labels; one or more receivers of the
trained model. Everything public (row split, batches, shuffling) is derived
from the spec's ``seed``, so parties agree on it without talking.

Stages, and what each party sends and learns:

1. ``load`` (local, no messages): each data owner keeps only its own columns
   and standardises them with its own training-row statistics; the label
   owner keeps the labels.
2. ``share_inputs``: each data owner secret-shares its train and test column
   blocks, the label owner its training labels. Every party learns the shapes
   (row counts and how many columns each owner has), and its own random shares.
3. ``train``: mini-batch SGD on shares (``w -= lr * X_b^T (sigmoid(X_b w + b) - y_b) / |b|``).
   Parties exchange only masked values (Beaver openings) and, with a dealer,
   party 0 receives triple corrections from it; nobody learns weights,
   gradients or predictions.
4. ``evaluate``: test predictions ``[X_test w + b > 0]`` are computed on
   shares and opened to the label owner only, who computes the accuracy.
5. ``release``: the weights are opened to the receivers only, who save a
   PyTorch state_dict (``model.pt``) for ``secure_ml.models.LogisticRegression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from secure_ml.data.partition import batch_schedule, split_rows, vertical_columns
from secure_ml.data.preprocess import Standardiser
from secure_ml.data.sources import SKLEARN_DATASETS, load_source
from secure_ml.models import LogisticRegression
from secure_ml.parties import DATA_OWNER, LABEL_OWNER, RECEIVER, Party
from secure_ml.protocols.base import Fail, PartyOutput, Protocol

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec


@dataclass
class LocalData:
    """One party's own plaintext: its feature columns and/or the labels."""

    x_train: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


@dataclass
class TrainState:
    """The shared values the stages pass along."""

    x_train: Any
    x_test: Any
    y_train: Any
    weight: Any = None
    bias: Any = None


def data_owners(spec: Spec) -> tuple[Party, ...]:
    return spec.roster.with_role(DATA_OWNER)


def label_owner(spec: Spec) -> Party:
    return spec.roster.with_role(LABEL_OWNER)[0]


def load_local(spec: Spec, party: Party) -> LocalData:
    """Stage 1: this party's own columns (standardised) and/or labels."""
    owners = data_owners(spec)
    local = LocalData()
    if party not in owners and not party.has(LABEL_OWNER):
        return local
    dataset = load_source(spec.data.source)
    train_rows, test_rows = split_rows(
        len(dataset.labels), test_fraction=spec.data.test_fraction, seed=spec.protocol.seed
    )
    if party in owners:
        columns = vertical_columns(dataset.features.shape[1], len(owners))[owners.index(party)]
        mine = dataset.features[:, columns]
        scaler = Standardiser.fit(mine[train_rows])
        local.x_train = torch.from_numpy(scaler.transform(mine[train_rows]))
        local.x_test = torch.from_numpy(scaler.transform(mine[test_rows]))
    if party.has(LABEL_OWNER):
        labels = torch.from_numpy(dataset.labels.astype(np.float32)).unsqueeze(1)
        local.y_train, local.y_test = labels[train_rows], labels[test_rows]
    return local


def share_inputs(session: Session, local: LocalData) -> TrainState:
    """Stage 2: every owner secret-shares its blocks; columns are concatenated."""
    blocks_train, blocks_test = [], []
    for owner in data_owners(session.spec):
        mine = owner.rank == session.rank
        blocks_train.append(
            session.share(local.x_train if mine else None, owner=owner.name, name="train features")
        )
        blocks_test.append(
            session.share(local.x_test if mine else None, owner=owner.name, name="test features")
        )
    labeller = label_owner(session.spec)
    y_train = session.share(
        local.y_train if labeller.rank == session.rank else None,
        owner=labeller.name,
        name="train labels",
    )
    crypten = session.crypten
    return TrainState(
        x_train=crypten.cat(blocks_train, dim=1),
        x_test=crypten.cat(blocks_test, dim=1),
        y_train=y_train,
    )


def sgd_step(x: Any, y: Any, weight: Any, bias: Any, lr: float) -> tuple[Any, Any]:
    """One logistic-regression SGD step; works on torch tensors and CrypTensors alike."""
    error = (x.matmul(weight) + bias).sigmoid() - y
    scale = lr / x.shape[0]
    weight = weight - x.t().matmul(error) * scale
    bias = bias - error.sum(0) * scale
    return weight, bias


def train(session: Session, state: TrainState) -> None:
    """Stage 3: mini-batch SGD on shares, on the public batch schedule."""
    spec = session.spec
    n_rows, n_features = state.x_train.shape
    crypten = session.crypten
    state.weight = crypten.cryptensor(torch.zeros(n_features, 1))
    state.bias = crypten.cryptensor(torch.zeros(1))
    schedule = batch_schedule(
        n_rows, batch_size=spec.train.batch_size, epochs=spec.train.epochs, seed=spec.protocol.seed
    )
    for epoch, batches in enumerate(schedule, start=1):
        for index in batches:
            state.weight, state.bias = sgd_step(
                state.x_train[index], state.y_train[index], state.weight, state.bias, spec.train.lr
            )
        session.progress(f"epoch {epoch}/{spec.train.epochs}")


def evaluate(session: Session, state: TrainState, local: LocalData) -> dict[str, Any]:
    """Stage 4: test predictions opened to the label owner only."""
    labeller = label_owner(session.spec)
    logits = state.x_test.matmul(state.weight) + state.bias
    predictions = session.reveal(logits > 0, to=[labeller.name], name="test predictions")
    if predictions is None:
        return {}
    accuracy = float((predictions.float() == local.y_test).float().mean())
    return {"accuracy": accuracy, "n_test": len(local.y_test)}


def release(session: Session, state: TrainState) -> dict[str, Any]:
    """Stage 5: the weights opened to the receivers, saved as a state_dict."""
    receivers = [p.name for p in session.roster.with_role(RECEIVER)]
    weight = session.reveal(state.weight, to=receivers, name="model")
    bias = session.reveal(state.bias, to=receivers, name="model")
    if weight is None:
        return {}
    model = LogisticRegression(weight.shape[0])
    model.load_state_dict({"linear.weight": weight.t().contiguous(), "linear.bias": bias})
    path = session.out_dir / "model.pt"
    torch.save(model.state_dict(), path)
    return {"model": path}


def plaintext_train(spec: Spec) -> tuple[LogisticRegression, float]:
    """The same model, schedule and seed on pooled plaintext; returns (model, accuracy)."""
    parts = [load_local(spec, owner) for owner in data_owners(spec)]
    labels = load_local(spec, label_owner(spec))
    x_train = torch.cat([p.x_train for p in parts], dim=1)
    x_test = torch.cat([p.x_test for p in parts], dim=1)
    weight, bias = torch.zeros(x_train.shape[1], 1), torch.zeros(1)
    schedule = batch_schedule(
        len(x_train), batch_size=spec.train.batch_size, epochs=spec.train.epochs,
        seed=spec.protocol.seed,
    )  # fmt: skip
    for batches in schedule:
        for index in batches:
            weight, bias = sgd_step(
                x_train[index], labels.y_train[index], weight, bias, spec.train.lr
            )
    model = LogisticRegression(x_train.shape[1])
    model.load_state_dict({"linear.weight": weight.t().contiguous(), "linear.bias": bias})
    with torch.no_grad():
        predictions = (model(x_test) > 0).float()
    return model, float((predictions == labels.y_test).float().mean())


class MPCTrain(Protocol):
    """Secret-shared logistic regression on vertically partitioned data."""

    name = "mpc.train"

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        known = ", ".join(f"'sklearn:{n}'" for n in SKLEARN_DATASETS)
        if spec.data.source is None or spec.data.source.removeprefix("sklearn:") not in (
            SKLEARN_DATASETS
        ):
            raise fail("[data]", f"source = {spec.data.source!r}: mpc.train reads one of {known}")
        if spec.data.partition != "vertical":
            raise fail("[data]", f"partition = {spec.data.partition!r}: mpc.train needs 'vertical'")
        if spec.model.kind != "logreg":
            raise fail("[model]", f"kind = {spec.model.kind!r}: mpc.train trains 'logreg'")
        if spec.dp is not None:
            raise fail("[dp]", "mpc.train does not apply differential privacy yet; remove [dp]")
        roster = spec.roster
        if not roster.with_role(DATA_OWNER):
            raise fail("[[party]]", "mpc.train needs at least one party with role 'data_owner'")
        if len(roster.with_role(LABEL_OWNER)) != 1:
            raise fail("[[party]]", "mpc.train needs exactly one party with role 'label_owner'")
        if not roster.with_role(RECEIVER):
            raise fail("[[party]]", "mpc.train needs at least one party with role 'receiver'")
        for party in spec.parties:
            if party.data is not None:
                raise fail(
                    f"[[party]] {party.name}",
                    "data = 'csv:...' is not read by mpc.train yet; use [data] source",
                )

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        local = load_local(session.spec, session.party)
        state = share_inputs(session, local)
        session.progress("inputs shared")
        train(session, state)
        metrics = evaluate(session, state, local)
        artifacts = release(session, state)
        return PartyOutput(metrics=metrics, artifacts=artifacts)

    @classmethod
    def plaintext_reference(cls, spec: Spec) -> dict[str, Any]:
        _, accuracy = plaintext_train(spec)
        return {"plaintext_accuracy": accuracy}
