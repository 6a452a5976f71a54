"""CKKS with TenSEAL: contexts, ciphertexts on the wire, and evaluation of an HE program.

The only module that imports ``tenseal``. The client side creates the secret
context and decrypts; the server side reads the public context and evaluates
``secure_ml.models.he_program.HEProgram`` steps on ciphertexts with its
plaintext weights. Every byte string a peer sends is parsed here and checked
(``CiphertextError`` on anything malformed, insecure or unexpected).

Two packings:

- feature-major (``encrypt_columns``): one ciphertext per input feature,
  holding that feature of up to N/2 samples. An affine map is then plaintext
  scalar times ciphertext plus ciphertext, a square is one ciphertext
  multiplication, and no slot ever moves: no rotation, no Galois keys, and the
  cost of a batch does not depend on its size up to N/2 samples;
- sample-major (``encrypt_rows``): one ciphertext per sample, for a client
  with a single query. Affine maps are TenSEAL's vector-matrix product
  (rotations, Galois keys). The bias rides in the matrix on a constant 1 that
  the client appends and every step keeps (1^2 = 1): a plaintext vector added
  to a packed ciphertext fills every slot, and the next product would sum
  those copies in.

Weights with ``|w| * 2^scale < 1/2`` encode to zero: such terms are skipped
(a product with an all-zero plaintext is what TenSEAL rejects as a
"transparent ciphertext"), and an output with no term left is the server's
own encryption of its bias.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import tenseal as ts
import torch

from secure_ml.errors import CiphertextError
from secure_ml.models.he_program import Affine, HEProgram, OddCubic, Square
from secure_ml.sharing.ckks_params import CKKSParams

__all__ = [
    "ciphertext_limit",
    "context_limit",
    "context_params",
    "decrypt_columns",
    "decrypt_rows",
    "encrypt_columns",
    "encrypt_rows",
    "evaluate_columns",
    "evaluate_row",
    "key_sizes",
    "new_context",
    "public_context_bytes",
    "read_ciphertext",
    "read_public_context",
    "rerandomised",
    "serialize",
]


def new_context(params: CKKSParams, *, galois: bool) -> ts.Context:
    """The client's secret context (relinearisation keys; Galois keys if ``galois``)."""
    params.check_security()
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    context.global_scale = 2.0**params.scale_bits
    if galois:
        context.generate_galois_keys()
    return context


def public_context_bytes(context: ts.Context) -> bytes:
    """What the client sends: the context without its secret key."""
    public = context.copy()
    public.make_context_public()
    return public.serialize(save_secret_key=False)


def key_sizes(context: ts.Context) -> dict[str, int]:
    """Serialized sizes (bytes) of the public parts, each on its own."""

    def size(**parts: bool) -> int:
        flags = {"save_public_key": False, "save_secret_key": False,
                 "save_galois_keys": False, "save_relin_keys": False}  # fmt: skip
        return len(context.serialize(**{**flags, **parts}))

    bare = size()
    sizes = {
        "public_key": size(save_public_key=True) - bare,
        "relin_keys": size(save_relin_keys=True) - bare,
    }
    if context.has_galois_keys():
        sizes["galois_keys"] = size(save_galois_keys=True) - bare
    return sizes


def context_params(context: ts.Context) -> CKKSParams:
    """The parameters a context was built with (q0 first, special prime last)."""
    seal = context.seal_context().data
    totals = []
    level = seal.key_context_data()
    while level is not None:
        totals.append(level.total_coeff_modulus_bit_count())
        level = level.next_context_data()
    # each level drops the last prime; the key level's last prime is the special one
    drops = [a - b for a, b in itertools.pairwise(totals)]
    bits = (totals[-1], *reversed(drops))
    degree = seal.key_context_data().parms().poly_modulus_degree()
    return CKKSParams(degree, tuple(bits), round(math.log2(context.global_scale)))


def read_public_context(data: bytes, expected: CKKSParams, *, galois: bool) -> ts.Context:
    """The server's view of the client's context, refused unless public and as agreed."""
    try:
        context = ts.context_from(data)
    except (ValueError, RuntimeError, TypeError):
        raise CiphertextError("the client's CKKS context is malformed (does not parse)") from None
    if context.has_secret_key() or not context.is_public():
        # never keep it: a server holding the secret key could decrypt every input
        raise CiphertextError("the client's context carries its secret key; refused (the client "
                              "must send make_context_public()'s context)")  # fmt: skip
    found = context_params(context)
    if found != expected:
        raise CiphertextError(
            f"the client's CKKS context does not match the agreed parameters: it has "
            f"{found.to_message()}, expected {expected.to_message()}"
        )
    if not context.has_relin_keys() or (galois and not context.has_galois_keys()):
        missing = "Galois keys" if context.has_relin_keys() else "relinearisation keys"
        raise CiphertextError(f"the client's context has no {missing}, which this mode needs")
    return context


def context_limit(params: CKKSParams, *, galois: bool) -> int:
    """Most bytes a public context of these parameters may take (before it is read).

    A key-switching key holds, per prime but the special one, two polynomials
    over the whole chain; there is one relinearisation key and, with Galois
    keys, one per power-of-two rotation each way plus the conjugation. Twice
    that, for serialisation overhead, plus a megabyte for the rest.
    """
    primes, degree = len(params.coeff_mod_bit_sizes), params.poly_modulus_degree
    switching_key = (primes - 1) * 2 * degree * primes * 8
    keys = 1 + (2 * int(math.log2(degree // 2)) + 1 if galois else 0)
    public_key = 2 * degree * primes * 8
    return 2 * (keys * switching_key + public_key) + 2**20


def ciphertext_limit(params: CKKSParams) -> int:
    """Most bytes a serialized ciphertext of these parameters may take."""
    words = 2 * params.poly_modulus_degree * len(params.coeff_mod_bit_sizes)
    return 8 * words + 4096


def serialize(vectors: Sequence[ts.CKKSVector]) -> list[bytes]:
    return [v.serialize() for v in vectors]


def read_ciphertext(
    context: ts.Context, data: bytes, *, size: int, fresh: bool = False
) -> ts.CKKSVector:
    """A peer's ciphertext, refused unless it parses under ``context`` and holds ``size`` values.

    ``fresh``: it must also be what an encryption gives, two polynomials at the
    top data level and the agreed scale, so that the evaluation cannot fail on
    it half way (a client's input).
    """
    try:
        vector = ts.ckks_vector_from(context, data)
    except (ValueError, RuntimeError, TypeError):
        raise CiphertextError("a ciphertext does not parse under the agreed CKKS context "
                              "(malformed, or made with other parameters)") from None  # fmt: skip
    if vector.size() != size:
        raise CiphertextError(f"a ciphertext holds {vector.size()} values, expected {size}")
    if fresh:
        (raw,) = vector.ciphertext()
        top = context.seal_context().data.first_parms_id()
        if raw.size() != 2 or raw.parms_id() != top or raw.scale != context.global_scale:
            raise CiphertextError("a ciphertext is not a fresh encryption under the agreed "
                                  "parameters (level, scale or size differ)")  # fmt: skip
    return vector


def rerandomised(context: ts.Context, vectors: Sequence[ts.CKKSVector]) -> list[ts.CKKSVector]:
    """Each answer plus a fresh public-key encryption of zero, before it is sent.

    The client holds the secret key and chose its ciphertexts' randomness; an
    answer's second polynomial is otherwise a function of them and of the
    weights. Adding a fresh encryption of zero makes it uniformly random. There
    is no noise flooding: the decrypted noise may still carry low-order bits
    of the weights' rounding.
    """
    return [v + ts.ckks_vector(context, [0.0] * v.size()) for v in vectors]


# ------------------------------------------------------------ feature-major --


def encrypt_columns(context: ts.Context, x: torch.Tensor) -> list[ts.CKKSVector]:
    """One ciphertext per column of ``x`` (rows: samples, at most N/2 of them)."""
    columns = x.double().T.contiguous()
    return [ts.ckks_vector(context, column.tolist()) for column in columns]


def decrypt_columns(vectors: Sequence[ts.CKKSVector]) -> torch.Tensor:
    """Rows of samples from one ciphertext per output."""
    return torch.tensor([v.decrypt() for v in vectors], dtype=torch.float64).T


def evaluate_columns(
    program: HEProgram, columns: list[ts.CKKSVector], context: ts.Context, *, scale_bits: int
) -> list[ts.CKKSVector]:
    """Every step on feature-major ciphertexts: no rotation, no Galois key."""
    size = columns[0].size()
    for step in program.steps:
        if isinstance(step, Affine):
            columns = [
                _combination(columns, row, float(b), context, size, scale_bits)
                for row, b in zip(step.weight, step.bias, strict=True)
            ]
        elif isinstance(step, Square):
            columns = [c.square() for c in columns]
        else:
            columns = [_odd_cubic(c, step) for c in columns]
    return columns


def _combination(
    columns: list[ts.CKKSVector], row: torch.Tensor, bias: float, context: ts.Context,
    size: int, scale_bits: int,
) -> ts.CKKSVector:  # fmt: skip
    """sum_i row[i] * columns[i] + bias, skipping weights that encode to zero."""
    smallest = 2.0 ** -(scale_bits + 1)
    total = None
    for i in torch.nonzero(row.abs() >= smallest).flatten().tolist():
        term = columns[i] * float(row[i])
        total = term if total is None else total.add_(term)
    if total is None:  # no weight left: the bias alone, encrypted with the public key
        return ts.ckks_vector(context, [bias] * size)
    return total.add_(bias) if bias else total


def _odd_cubic(x: ts.CKKSVector, cubic: OddCubic) -> ts.CKKSVector:
    """c0 + c1 x + (c3 x) x^2: two multiplication levels."""
    return (x * cubic.c3).mul_(x.square()).add_(x * cubic.c1).add_(cubic.c0)


# ------------------------------------------------------------- sample-major --


def encrypt_rows(context: ts.Context, x: torch.Tensor) -> list[ts.CKKSVector]:
    """One ciphertext per sample, with the constant 1 that carries the biases."""
    ones = torch.ones(len(x), 1, dtype=torch.float64)
    rows = torch.cat([x.double().flatten(1), ones], dim=1)
    return [ts.ckks_vector(context, row.tolist()) for row in rows]


def evaluate_row(program: HEProgram, row: ts.CKKSVector) -> ts.CKKSVector:
    """Every step on one sample's ciphertext: vector-matrix products with rotations."""
    last_affine = max(i for i, s in enumerate(program.steps) if isinstance(s, Affine))
    for index, step in enumerate(program.steps):
        if isinstance(step, Affine):
            row = row.mm(_augmented(step, keep_one=index != last_affine).tolist())
        elif isinstance(step, Square):
            row = row.square()
        else:
            row = _odd_cubic(row, step)
    return row


def _augmented(step: Affine, *, keep_one: bool) -> torch.Tensor:
    """The (in + 1, out [+ 1]) matrix: the bias as the constant's row, and the constant kept."""
    matrix = torch.cat([step.weight.T, step.bias.unsqueeze(0)], dim=0)
    if keep_one:
        carry = torch.zeros(matrix.shape[0], 1, dtype=matrix.dtype)
        carry[-1, 0] = 1.0
        matrix = torch.cat([matrix, carry], dim=1)
    return matrix


def decrypt_rows(vectors: Sequence[ts.CKKSVector], out_features: int) -> torch.Tensor:
    return torch.tensor([v.decrypt()[:out_features] for v in vectors], dtype=torch.float64)


# ---------------------------------------------------------------- baseline --


def naive_per_sample(
    params: CKKSParams, program: HEProgram, x: torch.Tensor
) -> tuple[torch.Tensor, list[float]]:
    """TenSEAL's tutorial evaluation in one process: one ciphertext per sample (the bench's
    naive baseline).

    A secret context with Galois keys (``params``, as agreed for a run), then
    for each row of ``x``: encrypt it, evaluate ``program`` with vector-matrix
    products (``evaluate_row``: the tutorial's ``mm`` then ``square``, the
    biases in augmented matrices so that they stay right) and decrypt. Returns
    the outputs and each sample's seconds (encrypt, evaluate, decrypt; the
    context is setup and not timed). No transport and no serialisation.
    """
    import time

    context = new_context(params, galois=True)
    outputs, seconds = [], []
    for row in x:
        began = time.perf_counter()
        (vector,) = encrypt_rows(context, row.unsqueeze(0))
        answer = evaluate_row(program, vector)
        outputs.append(decrypt_rows([answer], program.out_features)[0])
        seconds.append(time.perf_counter() - began)
    return torch.stack(outputs), seconds


def batched_in_process(
    params: CKKSParams, program: HEProgram, x: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Feature-major evaluation of ``x`` (at most N/2 rows) in one process: the outputs,
    and the seconds to encrypt, evaluate and decrypt (the context is setup, not timed).
    The same conditions as ``naive_per_sample``, so that the two compare the packings."""
    import time

    context = new_context(params, galois=False)
    began = time.perf_counter()
    columns = encrypt_columns(context, x)
    answers = evaluate_columns(program, columns, context, scale_bits=params.scale_bits)
    outputs = decrypt_columns(answers)
    return outputs, time.perf_counter() - began


__all__ += ["batched_in_process", "naive_per_sample"]
