"""``mpc.infer``: a model owner's model on data owners' inputs, predictions to the data owners.

Parties: one model owner (a PyTorch checkpoint, a model-zoo architecture with
its weights, or torchvision's ResNet-18), or, with ``kind = "shares:..."``, all
parties holding shares kept by ``mpc.train``; and one or more data owners.

Stages, and what each party sends and learns:

1. ``load`` (local): each data owner reads its own inputs (and labels, if it
   has them) and announces the shape of one sample (public).
2. ``model``: the model owner checks that CrypTen supports every layer (an
   error lists them before anyone computes), then announces the layer graph
   with every weight and value constant zeroed (``blank``; ONNX bytes, which
   every receiver checks with ``onnx`` before CrypTen reads them): the
   architecture is public, the weights are not.
   It secret-shares the weights. With kept shares, each party loads its own
   shares and all parties check they come from the same training run.
3. ``predict``: each data owner secret-shares its inputs in batches; the model
   runs on shares; the outputs of a batch are opened to that data owner only.
   The model owner learns nothing about inputs or outputs; the data owner
   learns its predictions (and so whatever they reveal about the model).
   With kept shares, the inputs are standardised on shares with the scalers
   ``mpc.train`` saved (``scaler.pt`` beside each party's shares): a vertical
   owner secret-shares its columns' mean and scale, a horizontal run's parties
   load their shares of the shared scaler; everyone learns only which columns
   each owner's scaler covers. Regression outputs are mapped back to original
   units on shares (the label owner's target scaler) before they are opened.
4. ``score`` (local): a data owner with labels computes its accuracy (or its
   mean squared error, in original units).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.compat import load_crypten
from secure_ml.data.local import LocalData, data_owners, load_local, uses_csv
from secure_ml.data.preprocess import Standardiser
from secure_ml.data.sources import check_source, describe_sources
from secure_ml.errors import DataError, ProtocolAbort, SecureMLError, SpecError
from secure_ml.models import BUILT_IN_KINDS, TaskShape, build_model
from secure_ml.parties import MODEL_OWNER, Party
from secure_ml.protocols.base import Fail, PartyOutput, Protocol, require_crypten_parties

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec

PREDICTIONS_FILE = "predictions.pt"


def model_owner(spec: Spec) -> Party | None:
    owners = spec.roster.with_role(MODEL_OWNER)
    return owners[0] if owners else None


def kept_shares(spec: Spec) -> bool:
    return spec.model.kind.startswith("shares:")


def n_outputs(spec: Spec) -> int:
    return spec.model.num_classes if spec.model.num_classes > 2 else 1


# ------------------------------------------------------------------ stage 1 --


def inputs(spec: Spec, party: Party, *, raw: bool = False) -> LocalData:
    """A data owner's own rows to predict on: its part of a source's test split, or its CSV.

    ``raw``: the rows are standardised later, on shares, with the trained scalers.
    """
    if party not in data_owners(spec):
        return LocalData()
    if uses_csv(spec):
        from secure_ml.data.csv import read_csv

        entry = next(p for p in spec.parties if p.name == party.name)
        table = read_csv(entry.data.split(":", 1)[1], label_column=entry.label_column)
        labels = None if table.labels is None else torch.from_numpy(table.labels)
        return LocalData(x_test=torch.from_numpy(table.features), y_test=labels)
    local = load_local(spec, party)
    if not raw and local.x_test is not None and local.x_test.dim() == 2:
        # tabular built-in sources: the data owner scales with its own statistics
        local.x_test = Standardiser.fit(local.x_train).transform(local.x_test)
    return local


def sample_shape(session: Session, local: LocalData) -> tuple[int, ...]:
    from secure_ml.sharing.mpc import publish

    mine = None if local.x_test is None else tuple(local.x_test.shape[1:])
    shapes = {s for s in publish(mine, my_rank=session.rank, world_size=session.world_size) if s}
    if len(shapes) != 1:
        raise DataError(f"the data owners' samples have different shapes: {sorted(shapes)}")
    return shapes.pop()


# ------------------------------------------------------------------ stage 2 --


def owner_model(spec: Spec, shape: tuple[int, ...]) -> torch.nn.Module:
    """The model owner's plaintext model (only ever built at the model owner)."""
    kind = spec.model.kind
    if kind.startswith("checkpoint:"):
        return _load_checkpoint(Path(kind.split(":", 1)[1]))
    model = build_model(
        kind, TaskShape(shape, n_outputs(spec)), seed=spec.protocol.seed,
        hidden=spec.model.hidden, channels=spec.model.channels,
        activation=spec.model.activation,
    )  # fmt: skip
    if spec.model.weights is not None:
        path = Path(spec.model.weights)
        if not path.is_file():
            raise DataError(f"[model] weights = {str(path)!r}: file not found at the model owner")
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
        except (RuntimeError, KeyError) as e:
            raise DataError(f"{path}: not a state_dict for [model] kind = {kind!r}: {e}") from None
    return model.eval()


def _load_checkpoint(path: Path) -> torch.nn.Module:
    if not path.is_file():
        raise DataError(f"[model] kind = 'checkpoint:{path}': file not found at the model owner")
    # The owner's own file: a whole pickled module (torch.save(model)).
    model = torch.load(path, weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise DataError(f"{path}: expected a torch.nn.Module saved with torch.save(model)")
    return model.eval()


def shared_model(session: Session, shape: tuple[int, ...]) -> Any:
    """Stage 2: a CrypTen model whose weights are secret-shared."""
    from secure_ml.sharing import model as sm
    from secure_ml.sharing.mpc import announce

    if kept_shares(session.spec):
        return _model_from_kept_shares(session)
    owner = model_owner(session.spec)
    exported: list[bytes] = []

    def checked_architecture() -> bytes:
        model = owner_model(session.spec, shape)
        sm.check_supported(model, shape)
        exported.append(sm.export(model, shape))
        return sm.blank(exported[0])

    graph = announce(checked_architecture, owner=owner, my_rank=session.rank, what="the model")
    # the owner builds from its real export, the others from the blank copy,
    # which onnx checks before CrypTen reads it
    if not exported:
        graph = sm.check_architecture(graph, sender=owner.name)
    return sm.from_architecture(exported[0] if exported else graph).encrypt(src=owner.rank)


def _model_from_kept_shares(session: Session) -> Any:
    from secure_ml.protocols.train import SHARES_FILE
    from secure_ml.sharing import model as sm
    from secure_ml.sharing.mpc import publish

    template = session.spec.model.kind.split(":", 1)[1]
    path = Path(template.replace("{party}", session.name))
    path = path / SHARES_FILE if path.is_dir() or not path.suffix else path
    saved = sm.read_shares(path)
    meta = saved["meta"]
    if (meta["party"], meta["rank"], meta["world_size"]) != (
        session.name, session.rank, session.world_size,
    ):  # fmt: skip
        raise DataError(
            f"{path}: these shares belong to {meta['party']} (rank {meta['rank']} of "
            f"{meta['world_size']}), not to {session.name} (rank {session.rank})"
        )
    runs = publish(meta["run_id"], my_rank=session.rank, world_size=session.world_size)
    if len(set(runs)) != 1:
        raise ProtocolAbort("the parties' model shares come from different training runs")
    shape = tuple(meta["sample_shape"])
    classes = meta["n_classes"] if meta["task"] == "multiclass" else 1
    torch_model = build_model(
        meta["kind"], TaskShape(shape, classes), seed=0, hidden=meta["hidden"],
        channels=meta["channels"], activation=meta.get("activation", "relu"),
    )  # fmt: skip
    model = sm.to_crypten(torch_model, shape).encrypt(src=0)
    sm.load_shares(model, saved["shares"], path)
    return model


def read_own_scaler(session: Session) -> dict[str, Any] | None:
    """This party's ``scaler.pt`` from training, beside its kept shares (or None)."""
    from secure_ml.sharing.scaling import SCALER_FILE, read_scaler

    if not kept_shares(session.spec):
        return None
    template = session.spec.model.kind.split(":", 1)[1]
    path = Path(template.replace("{party}", session.name))
    return read_scaler((path if path.is_dir() or not path.suffix else path.parent) / SCALER_FILE)


def scaler_layout(session: Session, saved: dict[str, Any] | None) -> list[Any]:
    """Every party announces what its scaler covers (public): kind, columns, target."""
    from secure_ml.sharing.mpc import publish

    mine = None
    if saved is not None:
        mine = (saved["kind"], saved.get("columns"), "features" in saved, "target" in saved)
    return publish(mine, my_rank=session.rank, world_size=session.world_size)


def shared_scalers(session: Session, saved: dict[str, Any] | None, layout: list[Any],
                   width: int) -> tuple[Any, Any]:  # fmt: skip
    """The (features, target) scalers on shares, or None where training had none."""
    from secure_ml.sharing.scaling import SharedScaler

    kinds = {entry[0] for entry in layout if entry is not None}
    if kinds == {"shared"}:
        if any(entry is None for entry in layout):
            raise DataError("some parties have no scaler.pt beside their model shares")
        features = SharedScaler.from_shares(saved["features"]) if layout[0][2] else None
        target = SharedScaler.from_shares(saved["target"]) if layout[0][3] else None
        return features, target
    blocks = sorted((entry[1], rank) for rank, entry in enumerate(layout) if entry and entry[2])
    covered = [c for (start, stop), _ in blocks for c in range(start, stop)]
    if blocks and covered != list(range(width)):
        raise DataError(f"the owners' scalers cover columns {covered}, not 0..{width - 1}")
    features = _cat([_share_plain(session, saved, rank, "features") for _, rank in blocks])
    targets = [rank for rank, entry in enumerate(layout) if entry and entry[3]]
    target = _share_plain(session, saved, targets[0], "target") if targets else None
    return features, target


def _share_plain(session: Session, saved: dict[str, Any] | None, rank: int, key: str) -> Any:
    """Party ``rank``'s plaintext scaler, secret-shared by it as (mean, scale, factor, std)."""
    from secure_ml.sharing.scaling import SharedScaler, split_std

    owner = session.roster.by_rank(rank).name
    values = [None] * 4
    if rank == session.rank:
        mean, std = saved[key]["mean"].float(), saved[key]["std"].float()
        values = [mean, *split_std(std), std]
    names = ("scaler mean", "scaler scale", "scaler factor", "scaler std")
    return SharedScaler(*(session.share(v, owner=owner, name=n)
                          for v, n in zip(values, names, strict=True)))  # fmt: skip


def _cat(scalers: list[Any]) -> Any:
    from secure_ml.sharing.scaling import SharedScaler

    if not scalers:
        return None
    crypten = load_crypten()
    columns = zip(*(s.tensors() for s in scalers), strict=True)
    return SharedScaler(*(crypten.cat(list(parts)) for parts in columns))


# ------------------------------------------------------------------ stage 3-4 --


def predict(
    session: Session, model: Any, local: LocalData, scalers: tuple[Any, Any] = (None, None)
) -> torch.Tensor | None:
    """Each data owner's rows, batch by batch; outputs opened to that owner only."""
    from secure_ml.sharing.mpc import publish

    spec = session.spec
    features, target = scalers
    mine = None if local.x_test is None else len(local.x_test)
    counts = publish(mine, my_rank=session.rank, world_size=session.world_size)
    model.eval()
    outputs: list[torch.Tensor] = []
    size = spec.infer.batch_size
    # batches still to run per batch length: the dealer's tuples are fetched ahead
    lengths = [min(size, counts[o.rank] - start)
               for o in data_owners(spec) for start in range(0, counts[o.rank], size)]  # fmt: skip
    remaining = Counter(lengths)
    for owner in data_owners(spec):
        n_rows = counts[owner.rank]
        for start in range(0, n_rows, size):
            rows = slice(start, start + size)
            batch = local.x_test[rows] if owner.rank == session.rank else None
            shared = session.share(batch, owner=owner.name, name="inputs")
            length = min(size, n_rows - start)
            with session.crypten.no_grad(), session.step(("infer", length), remaining[length]):
                if features is not None:
                    shared = features.transform(shared)
                logits = model(shared)
                if target is not None:
                    logits = target.restore(logits)
            remaining[length] -= 1
            opened = session.reveal(logits, to=[owner.name], name="predictions")
            if opened is not None:
                outputs.append(opened)
        session.progress(f"predicted {n_rows} rows of {owner.name}")
    return torch.cat(outputs) if outputs else None


def predicted_classes(outputs: torch.Tensor) -> torch.Tensor:
    """Class ids from logits: the sign of a single logit, else the argmax."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0).long()
    return outputs.argmax(1)


def score(
    predictions: torch.Tensor, labels: torch.Tensor | None, *, regression: bool = False
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"n_predictions": len(predictions)}
    if labels is not None and regression:  # outputs are in the targets' original units
        metrics["mse"] = float((predictions[:, 0] - labels.float()).square().mean())
    elif labels is not None:
        correct = predicted_classes(predictions) == labels.long()
        metrics["accuracy"] = float(correct.float().mean())
    return metrics


class MPCInfer(Protocol):
    """Secret-shared inference; predictions open only to each input's owner."""

    name = "mpc.infer"

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        require_crypten_parties(cls.name, spec, fail)
        roster = spec.roster
        kind = spec.model.kind
        owners = roster.with_role(MODEL_OWNER)
        if kept_shares(spec):
            if owners:
                raise fail("[[party]]", "with kind = 'shares:...' every party holds model shares; "
                           "remove the 'model_owner' role")  # fmt: skip
        elif len(owners) != 1:
            raise fail("[[party]]", "mpc.infer needs exactly one party with role 'model_owner'")
        elif not (kind in BUILT_IN_KINDS or kind.startswith("checkpoint:")):
            raise fail(
                "[model]",
                f"kind = {kind!r}: mpc.infer runs one of {', '.join(BUILT_IN_KINDS)}, "
                "'checkpoint:<path>' or 'shares:<path>'",
            )
        if kind == "torchvision:resnet18" and spec.model.activation != "relu":
            raise fail(
                "[model]",
                f"activation = {spec.model.activation!r}: kind = 'torchvision:resnet18' has "
                "ReLU activations only; remove activation or set it to 'relu'",
            )
        if not roster.with_role("data_owner"):
            raise fail("[[party]]", "mpc.infer needs at least one party with role 'data_owner'")
        if uses_csv(spec):
            for party in spec.parties:
                if "data_owner" in party.roles and party.data is None:
                    raise fail(f"[[party]] {party.name}", "a data owner needs data = 'csv:<path>'")
        elif spec.data.source is None:
            raise fail("[data]", f"source is missing: one of {describe_sources()}, or CSVs")
        else:
            try:
                check_source(spec.data.source)
            except SecureMLError as e:
                raise fail("[data]", str(e).removeprefix("[data] ")) from None
        if spec.data.partition == "vertical" and not uses_csv(spec):
            raise fail("[data]", "mpc.infer splits a source's test rows by data owner: "
                       "use partition = 'horizontal'")  # fmt: skip
        if spec.dp is not None:
            raise fail("[dp]", "mpc.infer does not apply differential privacy; remove [dp]")

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        saved = read_own_scaler(session)
        layout = scaler_layout(session, saved)
        trained_scalers = any(entry is not None for entry in layout)
        local = inputs(session.spec, session.party, raw=trained_scalers)
        shape = sample_shape(session, local)
        model = shared_model(session, shape)
        scalers = (None, None)
        if trained_scalers:
            scalers = shared_scalers(session, saved, layout, shape[-1])
        session.progress("model shared")
        started = time.perf_counter()
        predictions = predict(session, model, local, scalers)
        timings = {"predict": time.perf_counter() - started}
        if predictions is None:
            return PartyOutput(timings=timings)
        path = session.out_dir / PREDICTIONS_FILE
        torch.save(predictions, path)
        metrics = score(predictions, local.y_test, regression=scalers[1] is not None)
        return PartyOutput(metrics=metrics, timings=timings)

    @classmethod
    def plaintext_reference(cls, spec: Spec, party_dirs: dict[str, Path]) -> dict[str, Any]:
        """Agreement with the plaintext model, where model and data are at hand."""
        if kept_shares(spec) or uses_csv(spec):
            return {"agreement_with_plaintext": None, "max_abs_error": None}
        agree, total, worst = 0, 0, 0.0
        for owner in data_owners(spec):
            local = inputs(spec, owner)
            secure = torch.load(party_dirs[owner.name] / PREDICTIONS_FILE, weights_only=True)
            try:
                model = owner_model(spec, tuple(local.x_test.shape[1:]))
            except SpecError:
                return {"agreement_with_plaintext": None, "max_abs_error": None}
            with torch.no_grad():
                plain = model(local.x_test)
            worst = max(worst, float((secure - plain).abs().max()))
            agree += int((predicted_classes(secure) == predicted_classes(plain)).sum())
            total += len(plain)
        return {"agreement_with_plaintext": agree / total, "max_abs_error": worst}
