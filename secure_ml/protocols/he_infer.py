"""``he.infer``: a server's model on a client's CKKS-encrypted inputs (TenSEAL).

Two processes, both outside CrypTen's world (``crypten = false``, no dealer):
the client (roles ``data_owner`` and ``receiver``) holds the inputs and the
only secret key; the server (role ``model_owner``) holds the model. Every
message travels on the run's links, like every other protocol's.

Stages, and what each party sends and learns:

1. ``shape`` (client -> server): the shape of one sample and the number of
   samples (public; the server would see both from the ciphertexts anyway).
   The client clamps its standardised inputs to ``[-input_bound,
   input_bound]`` (``[he] input_bound``, public, in the spec) and counts what
   it clamped.
2. ``plan`` (server -> client): the server compiles its model into affine
   maps and squares (``secure_ml.models.he_program``), bounds every
   intermediate value from the input bound, and chooses CKKS parameters from
   the depth and those bounds (``secure_ml.sharing.ckks_params``, 128-bit
   security). It sends the parameters, the depth and the number of outputs.
   The client learns the model's multiplicative depth, its output width and
   about log2 of a worst-case bound of its values (the size of q0); never a
   weight. A model deeper than the chain allows, or a parameter set below
   128-bit security, is refused here, before anything is encrypted.
3. ``context`` (client -> server): the client creates the CKKS context with
   its secret key and sends the public context (public key, relinearisation
   keys, and Galois keys in ``per_sample`` mode): ``make_context_public``
   drops the secret key before serialisation. The server refuses a context
   that carries a secret key or other parameters than agreed.
4. ``evaluate``: the client encrypts (``batched``: one ciphertext per input
   feature across up to N/2 samples; ``per_sample``: one ciphertext per
   sample) and sends the ciphertexts; the server evaluates with its plaintext
   weights, which never leave it, and sends back one ciphertext per output
   (``batched``) or per sample. The server learns nothing about the inputs or
   the outputs (semantic security of CKKS under its public key); the client
   learns the outputs, and so whatever they reveal about the model.
5. ``score`` (client, local): it decrypts, applies sigmoid/softmax to logits
   and scores its labels. Nothing decrypted is ever sent back: with CKKS the
   server could recover the secret key from a decrypted value and its
   ciphertext (Li and Micciancio, 2021). The client sends nothing after stage 4.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from secure_ml.data.local import data_owners
from secure_ml.errors import CiphertextError, SecureMLError
from secure_ml.parties import MODEL_OWNER, RECEIVER, Party
from secure_ml.protocols.base import Fail, PartyOutput, Protocol, require_builtin_source
from secure_ml.protocols.infer import PREDICTIONS_FILE, inputs, owner_model, predicted_classes

if TYPE_CHECKING:
    from secure_ml.models.he_program import HEProgram
    from secure_ml.session import Session
    from secure_ml.sharing.ckks_params import CKKSParams
    from secure_ml.spec import Spec

#: what a server accepts from a client's announcement (memory stays bounded)
MAX_FEATURES = 16384
MAX_SAMPLES = 10**7
#: the most outputs a client waits for per round trip
MAX_OUTPUTS = 16384
#: the plan and shape messages are small JSON objects
PLAN_KEYS = ("params", "depth", "out_features", "in_features")


def client(spec: Spec) -> Party:
    return data_owners(spec)[0]


def server(spec: Spec) -> Party:
    return spec.roster.with_role(MODEL_OWNER)[0]


# ------------------------------------------------------------------ stage 1 --


def client_inputs(spec: Spec, party: Party) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The client's standardised rows, clamped to the input bound; and how many values moved."""
    local = inputs(spec, party)
    x, y = local.x_test.double(), local.y_test
    if spec.he.max_samples:
        x = x[: spec.he.max_samples]
        y = None if y is None else y[: spec.he.max_samples]
    if not torch.isfinite(x).all():
        raise SecureMLError("the client's inputs contain NaN or infinite values")
    bound = spec.he.input_bound
    clamped = int((x.abs() > bound).sum())
    return x.clamp(-bound, bound), y, clamped


# ------------------------------------------------------------------ stage 2 --


def make_plan(spec: Spec, shape: tuple[int, ...]) -> tuple[HEProgram, CKKSParams]:
    """The server's program and the CKKS parameters it needs (refused if it cannot fit)."""
    from secure_ml.models.he_program import Affine, compile_model
    from secure_ml.sharing.ckks_params import choose_params, output_bits

    he = spec.he
    model = owner_model(spec, shape)
    program = compile_model(
        model, shape, probabilities=he.output == "probabilities", input_bound=he.input_bound
    )
    bounds = program.worst_case_bounds(he.input_bound)
    params = choose_params(
        depth=program.depth,
        level_bits=[output_bits([b]) for b in bounds],
        poly_modulus_degree=he.poly_modulus_degree or None,
        scale_bits=he.scale_bits or None,
    )
    if he.mode == "per_sample":
        widest = max(max(step.weight.shape) for step in program.steps if isinstance(step, Affine))
        if widest + 1 > params.slots:  # the constant 1 rides in every vector
            raise SecureMLError(f"a layer of {widest} values does not fit {params.slots} slots "
                                "with its constant; use [he] mode = 'batched'")  # fmt: skip
    return program, params


def read_plan(message: Any, in_features: int) -> tuple[CKKSParams, int, int]:
    """The server's plan as the client checks it: secure parameters, depth within the chain."""
    from secure_ml.sharing.ckks_params import CKKSParams

    if not isinstance(message, dict) or set(message) != set(PLAN_KEYS):
        raise CiphertextError("the server's plan is malformed")
    params = CKKSParams.from_message(message["params"])
    depth, out_features = message["depth"], message["out_features"]
    if not all(isinstance(v, int) and v >= 1 for v in (depth, out_features)):
        raise CiphertextError("the server's plan is malformed (depth, out_features)")
    if message["in_features"] != in_features or out_features > MAX_OUTPUTS:
        raise CiphertextError(f"the server's plan reads {message['in_features']} values per "
                              f"sample (we send {in_features}) and returns {out_features} "
                              f"(at most {MAX_OUTPUTS}); refused")  # fmt: skip
    if depth > params.depth:
        raise CiphertextError(f"the model's depth {depth} exceeds the chain's {params.depth} "
                              "rescales; refused before encrypting anything")  # fmt: skip
    return params, depth, out_features


# ------------------------------------------------------------------ stage 4 --


def chunks(n: int, params: CKKSParams, mode: str) -> Iterator[int]:
    """Samples per round trip: up to N/2 per ciphertext batch, or one at a time."""
    size = params.slots if mode == "batched" else 1
    return (min(size, n - start) for start in range(0, n, size))


def client_rounds(session: Session, x: torch.Tensor, context: Any, params: CKKSParams,
                  out_features: int) -> tuple[torch.Tensor, list[float]]:  # fmt: skip
    """Encrypt, send, receive, decrypt; one wall time per round trip."""
    from secure_ml.sharing import he

    peer = server(session.spec).name
    mode = session.spec.he.mode
    outputs, times, start = [], [], 0
    limit = he.ciphertext_limit(params)
    for size in chunks(len(x), params, mode):
        began = time.perf_counter()
        rows = x[start : start + size]
        start += size
        vectors = he.encrypt_columns(context, rows) if mode == "batched" else he.encrypt_rows(
            context, rows)  # fmt: skip
        for data in he.serialize(vectors):
            session.send_bytes(data, to=peer)
        count, width = (out_features, size) if mode == "batched" else (1, out_features)
        answers = [he.read_ciphertext(context, session.receive_bytes(sender=peer, limit=limit),
                                      size=width) for _ in range(count)]  # fmt: skip
        decrypted = (he.decrypt_columns(answers) if mode == "batched"
                     else he.decrypt_rows(answers, out_features))  # fmt: skip
        outputs.append(decrypted)
        times.append(time.perf_counter() - began)
    return torch.cat(outputs), times


def server_rounds(session: Session, program: HEProgram, context: Any, params: CKKSParams,
                  n_samples: int) -> float:  # fmt: skip
    """Receive, evaluate, answer; returns the seconds spent evaluating."""
    from secure_ml.sharing import he

    peer = client(session.spec).name
    mode = session.spec.he.mode
    limit = he.ciphertext_limit(params)
    evaluating = 0.0
    for size in chunks(n_samples, params, mode):
        if mode == "batched":
            columns = [
                he.read_ciphertext(context, session.receive_bytes(sender=peer, limit=limit),
                                   size=size, fresh=True)
                for _ in range(program.in_features)
            ]  # fmt: skip
            began = time.perf_counter()
            answers = he.evaluate_columns(program, columns, context, scale_bits=params.scale_bits)
        else:
            row = he.read_ciphertext(context, session.receive_bytes(sender=peer, limit=limit),
                                     size=program.in_features + 1, fresh=True)  # fmt: skip
            began = time.perf_counter()
            answers = [he.evaluate_row(program, row)]
        answers = he.rerandomised(context, answers)
        evaluating += time.perf_counter() - began
        for data in he.serialize(answers):
            session.send_bytes(data, to=peer)
    return evaluating


# ------------------------------------------------------------------ the run --


def run_client(session: Session) -> PartyOutput:
    from secure_ml.sharing import he

    spec = session.spec
    peer = server(spec).name
    x, y, clamped = client_inputs(spec, session.party)
    session.send_object({"shape": list(x.shape[1:]), "samples": len(x)}, to=peer)
    params, depth, out_features = read_plan(
        session.receive_object(sender=peer), math.prod(x.shape[1:])
    )
    galois = spec.he.mode == "per_sample"
    began = time.perf_counter()
    context = he.new_context(params, galois=galois)
    public = he.public_context_bytes(context)
    keys_seconds = time.perf_counter() - began
    sent_before = session.links.sent_bytes
    session.send_bytes(public, to=peer)
    received_before = session.links.received_bytes
    session.progress(f"encrypting {len(x)} samples ({spec.he.mode})")
    outputs, times = client_rounds(session, x.flatten(1), context, params, out_features)
    session.record_reveal("predictions", [session.name])
    up = session.links.sent_bytes - sent_before
    down = session.links.received_bytes - received_before
    predictions = outputs.float()
    path = session.out_dir / PREDICTIONS_FILE
    torch.save(predictions, path)
    metrics = {
        "n_predictions": len(predictions),
        "mode": spec.he.mode,
        "output": spec.he.output,
        "samples_per_second": len(x) / sum(times),
        "seconds_per_sample": sum(times) / len(x),
        "latency_s": sorted(times)[len(times) // 2],
        "samples_per_round_trip": next(chunks(len(x), params, spec.he.mode)),
        "bytes_client_to_server": up,
        "bytes_server_to_client": down,
        "public_context_bytes": len(public),
        "key_bytes": he.key_sizes(context),
        "ckks": {**params.describe(), "model_depth": depth},
        "clamped_input_values": clamped,
        "input_bound": spec.he.input_bound,
    }
    if y is not None:
        metrics["accuracy"] = float((_classes(predictions, spec) == y.long()).float().mean())
    timings = {"keys": keys_seconds, "round_trips": sum(times)}
    return PartyOutput(metrics=metrics, timings=timings, artifacts={"predictions": path})


def _classes(predictions: torch.Tensor, spec: Spec) -> torch.Tensor:
    if spec.he.output == "probabilities":
        return (predictions[:, 0] > 0.5).long()
    return predicted_classes(predictions)


def run_server(session: Session) -> PartyOutput:
    from secure_ml.sharing import he

    spec = session.spec
    peer = client(spec).name
    shape, n_samples = read_shape(session.receive_object(sender=peer))
    program, params = make_plan(spec, shape)
    session.send_object({"params": params.to_message(), "depth": program.depth,
                         "out_features": program.out_features,
                         "in_features": program.in_features}, to=peer)  # fmt: skip
    galois = spec.he.mode == "per_sample"
    limit = he.context_limit(params, galois=galois)
    context = he.read_public_context(session.receive_bytes(sender=peer, limit=limit), params,
                                     galois=galois)  # fmt: skip
    evaluating = server_rounds(session, program, context, params, n_samples)
    metrics: dict[str, Any] = {"server_evaluation_s": evaluating}
    if spec.he.output == "probabilities":
        cubic = program.steps[-1]
        metrics["sigmoid_approximation"] = {
            "range": [-cubic.limit, cubic.limit], "max_abs_error": cubic.max_error,
            "coefficients_of_logit_over_range": [cubic.c0, cubic.c1, 0.0, cubic.c3],
        }  # fmt: skip
    return PartyOutput(metrics=metrics, timings={"evaluate": evaluating})


def read_shape(message: Any) -> tuple[tuple[int, ...], int]:
    ok = isinstance(message, dict) and set(message) == {"shape", "samples"}
    shape = message.get("shape") if ok else None
    samples = message.get("samples") if ok else None
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)
            and isinstance(samples, int) and samples > 0):  # fmt: skip
        raise CiphertextError("the client's announcement (sample shape and count) is malformed")
    if math.prod(shape) > MAX_FEATURES or samples > MAX_SAMPLES:
        raise CiphertextError(f"the client announced {samples} samples of shape {shape}: more "
                              f"than {MAX_SAMPLES} samples or {MAX_FEATURES} values per "
                              "sample is refused")  # fmt: skip
    return tuple(shape), samples


class HEInfer(Protocol):
    """Two-party inference on CKKS ciphertexts; only the client decrypts."""

    name = "he.infer"
    needs_crypten = False

    @classmethod
    def check_spec(cls, spec: Spec, fail: Fail) -> None:
        roster = spec.roster
        if spec.protocol.dealer != "none":
            raise fail("[protocol]", "he.infer needs no dealer: set dealer = 'none'")
        if len(spec.parties) != 2:
            raise fail("[[party]]", "he.infer runs exactly two parties: a client (roles "
                       "'data_owner' and 'receiver') and a server ('model_owner')")  # fmt: skip
        owners, holders = roster.with_role(MODEL_OWNER), data_owners(spec)
        if len(owners) != 1 or len(holders) != 1 or owners[0] == holders[0]:
            raise fail("[[party]]", "he.infer needs one party with role 'model_owner' (the "
                       "server) and another with role 'data_owner' (the client)")  # fmt: skip
        if roster.with_role(RECEIVER) != holders:
            raise fail(f"[[party]] {holders[0].name}", "only the client decrypts: give it the "
                       "role 'receiver', and no other party")  # fmt: skip
        if spec.dp is not None:
            raise fail("[dp]", "he.infer does not apply differential privacy; remove [dp]")
        require_builtin_source(cls.name, spec, fail)
        if spec.data.partition != "horizontal":
            raise fail("[data]", "he.infer's client holds whole rows of the test split: "
                       "use partition = 'horizontal'")  # fmt: skip
        if spec.he.output == "probabilities" and spec.model.kind != "logreg":
            raise fail("[he]", "output = 'probabilities' is for [model] kind = 'logreg' "
                       "(binary): the client applies softmax itself")  # fmt: skip

    @classmethod
    def run(cls, session: Session) -> PartyOutput:
        if session.party.has(MODEL_OWNER):
            return run_server(session)
        return run_client(session)

    @classmethod
    def plaintext_reference(cls, spec: Spec, party_dirs: dict[str, Path]) -> dict[str, Any]:
        """Agreement and largest error against the plaintext model on the same inputs.

        "The same inputs" are the clamped ones the client encrypted: the error is
        then CKKS's own. ``agreement_unclamped`` compares with the model on the
        raw inputs, so the cost of clamping shows too.
        """
        party = client(spec)
        raw = inputs(spec, party).x_test[: spec.he.max_samples or None].double()
        bound = spec.he.input_bound
        secure = torch.load(party_dirs[party.name] / PREDICTIONS_FILE, weights_only=True).double()
        model = owner_model(spec, tuple(raw.shape[1:])).double()
        with torch.no_grad():
            plain = model(raw.clamp(-bound, bound)).reshape(len(raw), -1)
            unclamped = model(raw).reshape(len(raw), -1)
        if spec.he.output == "probabilities":
            secure_classes = (secure[:, 0] > 0.5).long()
            # the cubic's own error is reported by the server (sigmoid_approximation)
            error = (secure[:, 0] - torch.sigmoid(plain[:, 0])).abs().max()
        else:
            secure_classes = predicted_classes(secure)
            error = (secure - plain).abs().max()
        return {
            "agreement_with_plaintext": _agree(secure_classes, plain),
            "agreement_unclamped": _agree(secure_classes, unclamped),
            "max_abs_error": float(error),
        }


def _agree(classes: torch.Tensor, logits: torch.Tensor) -> float:
    return float((classes == predicted_classes(logits)).float().mean())
