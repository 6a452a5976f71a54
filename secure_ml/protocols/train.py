"""``mpc.train``: train a model on data secret-shared by several parties.

Parties: data owners (each holds some columns of the same rows, ``vertical``;
or some rows with their labels, ``horizontal``/``dirichlet``), in vertical
partitions one label owner, and one or more receivers of the result. Public
values (row split, batches, initial weights) come from the spec's ``seed``, so
parties agree on them without talking.

Stages, and what each party sends and learns:

1. ``load`` (local): each party reads only its own part (built-in source or
   its own CSV). Vertical CSVs are then aligned by id: every party announces
   its id set and learns everyone's (see ``secure_ml.data.align``).
2. ``agree_task``: parties that see labels announce the task and the number
   of classes (public metadata).
3. ``preprocess`` (local, vertical only): each owner standardises its own
   columns with its own statistics (the label owner its regression targets).
4. ``share_inputs``: every owner secret-shares its train and test blocks and
   labels (horizontal: its raw rows and raw regression targets); all parties
   learn the shapes (row and column counts per owner).
   ``standardise_shared`` (horizontal, tabular): the global column mean and
   scale are computed on shares and applied on shares (see
   ``secure_ml.sharing.scaling``); nothing is opened, so no owner learns the
   global moments, nor another owner's sums or row values.
5. ``train``: SGD (optionally with momentum) with CrypTen autograd on shares,
   from public initial weights. Parties see only masked openings; with a
   dealer, party 0 receives triple corrections. After each epoch the loss of
   its last batch is opened to the receivers only. With ``[dp]`` this stage
   is DP-SGD on shares instead (``secure_ml.protocols.dp_sgd``: secret
   Poisson batches, per-row clipping, noise on shares) and no loss is opened.
6. ``evaluate``: the test accuracy (or MSE) is computed on shares and only
   that number is opened, to the receivers; no prediction is opened.
7. ``release``: the weights are opened to the receivers only (``model.pt``,
   a state_dict of the plaintext model class); or, with ``keep_shared``,
   nothing is opened and each party saves its own shares
   (``model-shares.pt``) for ``mpc.infer``. Each party also saves, in its own
   output directory only, the scaler the model's inputs need (``scaler.pt``):
   a vertical owner its plaintext column statistics (the label owner also its
   target's), every party of a horizontal run its shares of the shared scaler.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from secure_ml.data.local import LocalData, data_owners, load_local, uses_csv
from secure_ml.data.partition import batch_schedule
from secure_ml.data.preprocess import MIN_SHARED_STD, Standardiser
from secure_ml.data.sources import check_source, describe_sources
from secure_ml.errors import DataError, SecureMLError
from secure_ml.models import TRAINABLE_KINDS, TaskShape, build_model
from secure_ml.parties import LABEL_OWNER, RECEIVER, Party
from secure_ml.protocols.base import Fail, PartyOutput, Protocol, require_crypten_parties

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec

TASKS = ("binary", "multiclass", "regression")
#: largest number of distinct integer labels a CSV label column may have and
#: still be read as classes (more: regression)
MAX_CSV_CLASSES = 100
SHARES_FILE = "model-shares.pt"


@dataclass
class TrainState:
    """The shared values the stages pass along, and the public task description."""

    task: str
    n_classes: int
    x_train: Any = None
    y_train: Any = None
    x_test: Any = None
    y_test: Any = None
    model: Any = None
    torch_model: torch.nn.Module | None = None
    #: vertical: the columns each owner shared, in order (public)
    widths: list[int] | None = None
    #: horizontal: the shared feature and target scalers (SharedScaler)
    scaler: Any = None
    target_scaler: Any = None
    #: DP-SGD: the shared Linear layers trained by ``secure_ml.protocols.dp_sgd``
    dp_layers: list[Any] | None = None


# ---------------------------------------------------------------- stage 1-2 --


def label_holders(spec: Spec) -> tuple[Party, ...]:
    if spec.data.partition == "vertical":
        return spec.roster.with_role(LABEL_OWNER)
    return data_owners(spec)


def infer_csv_task(labels: torch.Tensor) -> tuple[str, int]:
    """Integer labels 0..k-1 (few of them) are classes; anything else is a target."""
    integral = bool((labels == labels.round()).all()) and bool((labels >= 0).all())
    if integral and int(labels.max()) < MAX_CSV_CLASSES:
        n_classes = int(labels.max()) + 1
        return ("binary", 2) if n_classes <= 2 else ("multiclass", n_classes)
    return "regression", 1


def agree_task(session: Session, local: LocalData) -> tuple[str, int]:
    """Every label holder announces (task, classes); classes are the union."""
    from secure_ml.sharing.mpc import publish

    mine = None
    if local.task is not None:
        mine = (local.task, local.n_classes)
    elif local.y_train is not None:
        mine = infer_csv_task(torch.cat([local.y_train, local.y_test]))
    announced = [a for a in publish(mine, my_rank=session.rank, world_size=session.world_size) if a]
    if not announced:
        raise DataError("no party holds labels: give a label owner a label_column")
    if any(task == "regression" for task, _ in announced):
        return "regression", 1
    n_classes = max(n for _, n in announced)
    return ("binary" if n_classes <= 2 else "multiclass"), n_classes


def encode_targets(y: torch.Tensor | None, task: str, n_classes: int) -> torch.Tensor | None:
    """Class ids -> one-hot (multiclass) or a column (binary, regression)."""
    if y is None:
        return None
    if task == "multiclass":
        return torch.nn.functional.one_hot(y.long(), n_classes).float()
    return y.float().reshape(-1, 1)


# ----------------------------------------------------------------- stage 3 --


def standardise_own(local: LocalData, task: str, *, min_std: float | None = None) -> dict:
    """Scale what this holder owns with its own statistics: tabular features, and
    regression targets if it holds them (images keep their [0, 1] pixels).

    Returns the fitted scalers (``features``, ``target``) for ``scaler.pt``.
    """
    fitted: dict[str, Standardiser] = {}
    floor = {} if min_std is None else {"min_std": min_std}
    if local.x_train is not None and local.x_train.dim() == 2:
        scaler = fitted["features"] = Standardiser.fit(local.x_train, **floor)
        local.x_train, local.x_test = (
            scaler.transform(local.x_train),
            scaler.transform(local.x_test),
        )
    if task == "regression" and local.y_train is not None:
        scaler = fitted["target"] = Standardiser.fit(local.y_train.reshape(-1, 1), **floor)
        local.y_train = scaler.transform(local.y_train.reshape(-1, 1)).flatten()
        local.y_test = scaler.transform(local.y_test.reshape(-1, 1)).flatten()
    return fitted


def preprocess(session: Session, local: LocalData, task: str) -> dict:
    """Vertical: each owner standardises its own columns; horizontal: nothing here
    (the rows are standardised on shares after ``share_inputs``)."""
    if session.spec.data.partition == "vertical":
        return standardise_own(local, task)
    return {}


def standardise_shared(state: TrainState) -> None:
    """Horizontal: fit the global scaler on the shared train rows, apply it on shares."""
    from secure_ml.sharing.scaling import fit_shared

    if state.x_train.dim() == 2:
        state.scaler = fit_shared(state.x_train)
        state.x_train = state.scaler.transform(state.x_train)
        state.x_test = state.scaler.transform(state.x_test)
    if state.task == "regression":
        state.target_scaler = fit_shared(state.y_train)
        state.y_train = state.target_scaler.transform(state.y_train)
        state.y_test = state.target_scaler.transform(state.y_test)


# ----------------------------------------------------------------- stage 4 --


def share_inputs(session: Session, local: LocalData, state: TrainState) -> None:
    """Every owner shares its blocks: columns side by side, or rows one after another."""
    crypten = session.crypten
    spec = session.spec
    vertical = spec.data.partition == "vertical"
    x_train, x_test = [], []
    for owner in data_owners(spec):
        mine = owner.rank == session.rank
        x_train.append(
            session.share(local.x_train if mine else None, owner=owner.name, name="train features")
        )
        x_test.append(
            session.share(local.x_test if mine else None, owner=owner.name, name="test features")
        )
    y_train, y_test = [], []
    for holder in label_holders(spec):
        mine = holder.rank == session.rank
        for name, y, out in (
            ("train labels", local.y_train, y_train),
            ("test labels", local.y_test, y_test),
        ):
            targets = encode_targets(y, state.task, state.n_classes) if mine else None
            out.append(session.share(targets, owner=holder.name, name=name))
    dim = 1 if vertical else 0
    if vertical:
        state.widths = [int(x.shape[1]) for x in x_train]
    state.x_train, state.x_test = crypten.cat(x_train, dim=dim), crypten.cat(x_test, dim=dim)
    state.y_train, state.y_test = crypten.cat(y_train, dim=0), crypten.cat(y_test, dim=0)


# ----------------------------------------------------------------- stage 5 --


def n_outputs(task: str, n_classes: int) -> int:
    return n_classes if task == "multiclass" else 1


def fresh_model(
    spec: Spec, sample_shape: tuple[int, ...], task: str, n_classes: int
) -> torch.nn.Module:
    shape = TaskShape(sample_shape=sample_shape, n_outputs=n_outputs(task, n_classes))
    return build_model(
        spec.model.kind, shape, seed=spec.protocol.seed, hidden=spec.model.hidden,
        channels=spec.model.channels, activation=spec.model.activation,
    )  # fmt: skip


def loss_function(task: str, library: Any) -> Any:
    """The loss for ``task`` from ``library`` (``torch.nn`` or ``crypten.nn``)."""
    if task == "binary":
        return library.BCEWithLogitsLoss()
    if task == "multiclass":
        return library.CrossEntropyLoss()
    return library.MSELoss()


def schedule(spec: Spec, n_rows: int) -> list[list[torch.Tensor]]:
    return batch_schedule(
        n_rows, batch_size=spec.train.batch_size, epochs=spec.train.epochs, seed=spec.protocol.seed
    )


def output_gradient(out: Any, y: Any, task: str) -> Any:
    """d(mean loss)/d(logits) in closed form: no log or loss value on shares needed."""
    if task == "binary":
        return (out.sigmoid() - y) / out.shape[0]
    if task == "multiclass":
        return (out.softmax(dim=1) - y) / out.shape[0]
    return (out - y) * (2.0 / out.nelement())


def train(session: Session, state: TrainState) -> list[dict[str, float]]:
    """SGD with CrypTen autograd; each epoch's last-batch loss opened to receivers.

    The backward pass starts from the closed-form gradient of the loss with
    respect to the model's output (the same as autograd through the loss),
    which skips the logarithm CrypTen would otherwise approximate on shares
    every step. The loss value itself is computed once per epoch.
    """
    from secure_ml.sharing.model import to_crypten

    spec, crypten = session.spec, session.crypten
    receivers = [p.name for p in session.roster.with_role(RECEIVER)]
    sample_shape = tuple(state.x_train.shape[1:])
    state.torch_model = fresh_model(spec, sample_shape, state.task, state.n_classes)
    state.model = to_crypten(state.torch_model, sample_shape).encrypt(src=0)
    state.model.train()
    optimizer = crypten.optim.SGD(
        state.model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum
    )
    loss_fn = loss_function(state.task, crypten.nn)
    history = []
    epochs = schedule(spec, state.x_train.shape[0])
    # steps still to run per batch size: the dealer's tuples are fetched ahead
    remaining = Counter(len(index) for batches in epochs for index in batches)
    for epoch, batches in enumerate(epochs, start=1):
        for index in batches:
            with session.step(("train", len(index)), remaining[len(index)]):
                out = state.model(state.x_train[index])
                y = state.y_train[index]
                optimizer.zero_grad()
                out.backward(output_gradient(out, y, state.task))
                optimizer.step()
            remaining[len(index)] -= 1
        with crypten.no_grad(), session.step(("loss", len(index)), len(epochs) - epoch + 1):
            last_loss = loss_fn(out, y)
        opened = session.reveal(last_loss, to=receivers, name="epoch losses")
        if opened is not None:
            history.append({"epoch": epoch, "last_batch_loss": float(opened)})
        session.progress(f"epoch {epoch}/{spec.train.epochs}")
    return history


# ---------------------------------------------------------------- stage 6-7 --


def evaluate(session: Session, state: TrainState) -> dict[str, Any]:
    """Test accuracy (or MSE) on shares; only the number is opened, to receivers."""
    receivers = [p.name for p in session.roster.with_role(RECEIVER)]
    with session.crypten.no_grad():
        out = predict(state, state.x_test)
        y = state.y_test
        if state.task == "multiclass":
            score = (out.argmax(dim=1, one_hot=True) * y).sum()
        elif state.task == "binary":
            predicted = out > 0
            score = (predicted * y + (1 - predicted) * (1 - y)).sum()
        else:
            score = ((out - y).square()).sum()
    opened = session.reveal(score, to=receivers, name="test metric")
    if opened is None:
        return {}
    n_test = state.x_test.shape[0]
    key = "mse" if state.task == "regression" else "accuracy"
    return {key: float(opened) / n_test, "n_test": n_test}


def predict(state: TrainState, x: Any) -> Any:
    """The shared model's outputs for the shared rows ``x``."""
    if state.dp_layers is not None:
        from secure_ml.protocols.dp_sgd import forward

        return forward(state.dp_layers, x.flatten(1))[0]
    state.model.eval()
    return state.model(x)


def shared_weights(state: TrainState) -> dict[str, Any]:
    """The trained parameters, shared, by their plaintext state_dict names."""
    from secure_ml.sharing.model import shared_parameters

    if state.dp_layers is None:
        return shared_parameters(state.model)
    from secure_ml.protocols.dp_sgd import linear_layers

    named = {}
    for (name, _), layer in zip(linear_layers(state.torch_model), state.dp_layers, strict=True):
        named[f"{name}.weight"], named[f"{name}.bias"] = layer.weight, layer.bias
    return named


def release(session: Session, state: TrainState) -> dict[str, Any]:
    """Open the weights to the receivers (model.pt), or keep them shared."""
    from secure_ml.sharing.model import save_shares

    if session.spec.train.keep_shared:
        return {
            "model_shares": save_shares(
                session.out_dir / SHARES_FILE, state.model, _meta(session, state)
            )
        }
    receivers = [p.name for p in session.roster.with_role(RECEIVER)]
    opened = {
        name: session.reveal(param, to=receivers, name="model")
        for name, param in shared_weights(state).items()
    }
    if any(v is None for v in opened.values()):
        return {}
    state.torch_model.load_state_dict({**state.torch_model.state_dict(), **opened})
    path = session.out_dir / "model.pt"
    torch.save(state.torch_model.state_dict(), path)
    return {"model": path}


def save_scalers(session: Session, state: TrainState, fitted: dict) -> Path | None:
    """This party's scaler, saved in its own directory only (never sent to anyone).

    Vertical: the owner's plaintext statistics and which columns of the model's
    input they cover (the label owner: its target's). Horizontal: this party's
    shares of the shared scalers, useless alone, like ``model-shares.pt``.
    """
    from secure_ml.sharing.scaling import SCALER_FILE, save_scaler

    record: dict[str, Any] = {}
    if session.spec.data.partition == "vertical":
        if "features" in fitted:
            index = [o.name for o in data_owners(session.spec)].index(session.name)
            start = sum(state.widths[:index])
            record["columns"] = [start, start + state.widths[index]]
            record["features"] = fitted["features"].as_dict()
        if "target" in fitted:
            record["target"] = fitted["target"].as_dict()
        kind = "plain"
    else:
        for key, scaler in (("features", state.scaler), ("target", state.target_scaler)):
            if scaler is not None:
                record[key] = scaler.shares()
        kind = "shared"
    if not record:
        return None
    return save_scaler(session.out_dir / SCALER_FILE, {"kind": kind, **record})


def _meta(session: Session, state: TrainState) -> dict[str, Any]:
    """What mpc.infer needs to rebuild the model around these shares."""
    from secure_ml.sharing.mpc import publish

    nonce = secrets.token_hex(16) if session.rank == 0 else None
    run_id = publish(nonce, my_rank=session.rank, world_size=session.world_size)[0]
    spec = session.spec
    return {
        "run_id": run_id,
        "party": session.name,
        "rank": session.rank,
        "world_size": session.world_size,
        "kind": spec.model.kind,
        "hidden": list(spec.model.hidden),
        "channels": spec.model.channels,
        "activation": spec.model.activation,
        "sample_shape": list(state.x_train.shape[1:]),
        "task": state.task,
        "n_classes": state.n_classes,
        "dealer": spec.protocol.dealer,
    }


# ------------------------------------------------------------ plaintext twin --


_SPLITS = ("x_train", "x_test", "y_train", "y_test")


class PooledData(NamedTuple):
    """Every owner's rows pooled in plaintext, prepared as the shared path prepares them."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    #: encoded targets: one-hot (multiclass) or a column (binary, regression)
    y_train: torch.Tensor
    y_test: torch.Tensor
    task: str
    n_classes: int


def pooled_data(spec: Spec) -> PooledData:
    """The training and test rows of every owner, pooled (public data only).

    Standardised as the shared run does it, so plaintext baselines see the same
    inputs: vertical, each owner's columns (and the label owner's targets) with
    its own statistics; horizontal, all rows with the global statistics.
    """
    parts = [load_local(spec, owner) for owner in data_owners(spec)]
    task, n_classes = parts[0].task, parts[0].n_classes
    if spec.data.partition == "vertical":
        labels = load_local(spec, spec.roster.with_role(LABEL_OWNER)[0])
        for part in [*parts, labels]:
            standardise_own(part, task)
        pooled = LocalData(
            x_train=torch.cat([p.x_train for p in parts], dim=1),
            x_test=torch.cat([p.x_test for p in parts], dim=1),
            y_train=labels.y_train,
            y_test=labels.y_test,
        )
    else:
        pooled = LocalData(**{key: torch.cat([getattr(p, key) for p in parts]) for key in _SPLITS})
        if pooled.x_train.dim() == 2:
            # the same statistics as the shared scaler, which treats std < 2^-9 as constant
            standardise_own(pooled, task, min_std=MIN_SHARED_STD)
    return PooledData(
        pooled.x_train, pooled.x_test,
        encode_targets(pooled.y_train, task, n_classes),
        encode_targets(pooled.y_test, task, n_classes),
        task, n_classes,
    )  # fmt: skip


def score_model(model: torch.nn.Module, data: PooledData, prefix: str) -> dict[str, float]:
    """``<prefix>_accuracy`` (or ``<prefix>_mse``) of ``model`` on the pooled test rows."""
    with torch.no_grad():
        out = model.eval()(data.x_test)
    if data.task == "regression":
        return {f"{prefix}_mse": float(((out - data.y_test) ** 2).mean())}
    if data.task == "binary":
        correct = ((out > 0).float() == data.y_test).float()
    else:
        correct = (out.argmax(1) == data.y_test.argmax(1)).float()
    return {f"{prefix}_accuracy": float(correct.mean())}


def opacus_reference(spec: Spec) -> dict[str, Any]:
    """The ``opacus_*`` metrics: the same model, pooled data (clamped as on shares),
    schedule and sigma trained by Opacus in plaintext (``secure_ml.release.opacus_baseline``)."""
    from secure_ml.release.opacus_baseline import bounded, opacus_train

    data = bounded(pooled_data(spec))
    model = fresh_model(spec, tuple(data.x_train.shape[1:]), data.task, data.n_classes)
    account = opacus_train(spec, data, model, loss_function(data.task, torch.nn))
    return {**score_model(model, data, "opacus"), **account}


def plaintext_train(spec: Spec) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The same model, schedule and seed on pooled plaintext (public data only)."""
    data = pooled_data(spec)
    x_train, y_train = data.x_train, data.y_train
    model = fresh_model(spec, tuple(x_train.shape[1:]), data.task, data.n_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum)
    loss_fn = loss_function(data.task, torch.nn)
    started = time.perf_counter()
    for batches in schedule(spec, len(x_train)):
        for index in batches:
            optimizer.zero_grad()
            loss_fn(model(x_train[index]), y_train[index]).backward()
            optimizer.step()
    timing = {"plaintext_train_seconds": time.perf_counter() - started}
    return model, {**score_model(model, data, "plaintext"), **timing}


# ------------------------------------------------------------------ protocol --


class MPCTrain(Protocol):
    """Secret-shared training of logreg, linreg, MLP and CNN models."""

    name = "mpc.train"

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        require_crypten_parties(cls.name, spec, fail)
        roster = spec.roster
        csv = uses_csv(spec)
        vertical = spec.data.partition == "vertical"
        if csv and spec.data.source is not None:
            raise fail("[data]", "source is set but parties also have data = 'csv:...'; use one")
        if not csv:
            if spec.data.source is None:
                raise fail(
                    "[data]", f"source is missing: one of {describe_sources()}, or per-party CSVs"
                )
            try:
                check_source(spec.data.source)
            except SecureMLError as e:
                raise fail("[data]", str(e).removeprefix("[data] ")) from None
            if vertical and spec.data.source.startswith("torchvision:"):
                raise fail("[data]", "images are split by rows: use partition = 'horizontal'")
        if spec.model.kind not in TRAINABLE_KINDS:
            raise fail(
                "[model]",
                f"kind = {spec.model.kind!r}: mpc.train trains one of logreg, linreg, mlp, cnn",
            )
        if spec.dp is not None:
            _check_dp(spec, fail)
        owners = roster.with_role("data_owner")
        if not owners:
            raise fail("[[party]]", "mpc.train needs at least one party with role 'data_owner'")
        if not roster.with_role(RECEIVER):
            raise fail("[[party]]", "mpc.train needs at least one party with role 'receiver'")
        if vertical and len(roster.with_role(LABEL_OWNER)) != 1:
            raise fail(
                "[[party]]", "a vertical partition needs exactly one party with role 'label_owner'"
            )
        if not vertical and roster.with_role(LABEL_OWNER):
            raise fail(
                "[[party]]",
                f"partition = {spec.data.partition!r}: every data owner holds its own labels; "
                "remove the 'label_owner' role",
            )
        if csv:
            _check_csv_parties(spec, fail)

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        spec = session.spec
        local = load_local(spec, session.party)
        if uses_csv(spec) and spec.data.partition == "vertical":
            from secure_ml.data.align import align_rows

            local = align_rows(session, local)
        task, n_classes = agree_task(session, local)
        fitted = preprocess(session, local, task)
        state = TrainState(task=task, n_classes=n_classes)
        share_inputs(session, local, state)
        if spec.data.partition != "vertical":
            standardise_shared(state)
        session.progress("inputs shared")
        started = time.perf_counter()
        privacy = None
        if spec.dp is None:
            history = train(session, state)
        else:
            from secure_ml.protocols.dp_sgd import train_dp

            sample_shape = tuple(state.x_train.shape[1:])
            state.torch_model = fresh_model(spec, sample_shape, state.task, state.n_classes)
            history, privacy = [], train_dp(session, state)
        train_seconds = time.perf_counter() - started
        metrics = evaluate(session, state)
        if history:
            metrics["epochs"] = history
        artifacts = release(session, state)
        scaler = save_scalers(session, state, fitted)
        if scaler is not None:
            artifacts["scaler"] = scaler
        timings = {"train": train_seconds}
        return PartyOutput(metrics=metrics, artifacts=artifacts, timings=timings, privacy=privacy)

    @classmethod
    def plaintext_reference(cls, spec: Spec, party_dirs: dict[str, Path]) -> dict[str, Any]:
        if uses_csv(spec):
            # private data: no pooled baselines
            opacus = {} if spec.dp is None else {"opacus_accuracy": None}
            return {"plaintext_accuracy": None, **opacus}
        metrics = plaintext_train(spec)[1]
        if spec.dp is not None:
            metrics.update(opacus_reference(spec))
        return metrics


def _check_dp(spec: Spec, fail: Fail) -> None:
    from secure_ml.protocols.dp_sgd import DP_KINDS

    if spec.model.kind not in DP_KINDS:
        raise fail(
            "[model]",
            f"kind = {spec.model.kind!r}: DP-SGD on shares trains {', '.join(DP_KINDS)}; "
            "remove [dp] or pick one of those",
        )
    if spec.model.activation != "relu":
        # dp_sgd's hand-written forward and backward know ReLU's derivative only
        raise fail(
            "[model]",
            f"activation = {spec.model.activation!r}: DP-SGD on shares trains ReLU "
            "activations only; remove [dp] or set activation = 'relu'",
        )
    if spec.train.keep_shared:
        raise fail("[train]", "keep_shared = true is not available with [dp] yet; remove one")


def _check_csv_parties(spec: Spec, fail: Fail) -> None:
    vertical = spec.data.partition == "vertical"
    if spec.data.partition == "dirichlet":
        raise fail(
            "[data]", "partition = 'dirichlet' simulates non-IID owners on a built-in source"
        )
    if vertical and spec.data.id_column is None:
        raise fail("[data]", "vertical CSVs need id_column = '<column that identifies a row>'")
    for party in spec.parties:
        owner = "data_owner" in party.roles
        if owner and party.data is None:
            raise fail(f"[[party]] {party.name}", "a data owner needs data = 'csv:<path>'")
        holds_labels = (LABEL_OWNER in party.roles) if vertical else owner
        if holds_labels and party.label_column is None:
            raise fail(f"[[party]] {party.name}", "this party holds labels: set label_column")
        if vertical and LABEL_OWNER in party.roles and not owner:
            raise fail(
                f"[[party]] {party.name}",
                "with vertical CSVs the label owner must also be a data_owner "
                "(its CSV has features)",
            )
