"""Secret-sharing randomness from ChaCha20 key streams instead of torch generators.

CrypTen draws every mask from ``torch.Generator`` objects (Mersenne Twister)
seeded with ``manual_seed``, which keeps only the low 32 bits of the seed: a
peer can brute-force a shared generator in CPU-hours. While ``mask_streams``
is installed (for the duration of a ``Session``), every such generator is a
``KeyStream`` instead: the ChaCha20 keystream of a fresh 256-bit key from
``os.urandom`` (``cryptography``'s OpenSSL ChaCha20), read as int64 words.

The streams and who holds each key, stage by stage:

1. pairwise (``prev``/``next``, sharings of zero, hence every owner's
   ``cryptensor(src=...)`` mask): each compute party draws a key for the stream
   it shares with the next rank and sends it to that rank as 4 int64 (CrypTen
   sends its 64-bit seed the same way); it receives the previous rank's key.
   Each key is known to exactly those two parties;
2. ``local`` (PRSS, ``crypten.rand``, the TFP dealer's triples): a key that
   never leaves the party;
3. dealer (TTP): the dealer draws one key per compute party and sends each
   party its own key (4 int64 on the dealer's group); party ``i``'s triple
   shares come from its stream, and the dealer regenerates them from the same
   key to compute party 0's correction. Parties learn only their own key.

``global`` stays a torch generator seeded by a random 64-bit value rank 0
broadcasts, as in CrypTen: every party holds it by design, so it hides
nothing from any party and is not mask material (CrypTen uses it only for
dropout masks, which all parties know).

Parties that share a stream draw from it in the same order and the same
amounts (8 bytes per element, whatever the range), so their values agree.
Ring elements are the int64 words themselves (exactly uniform over Z_2^64);
k-bit tensors keep the low k bits of a word (exactly uniform over [0, 2^k)).
A run draws far less than the 256 GiB that ChaCha20's 32-bit block counter
covers under one key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secure_ml.compat import load_crypten
from secure_ml.errors import UnsafeConfigurationError
from secure_ml.sharing.patching import patched

KEY_BYTES = 32  # ChaCha20's key size; at least 16 bytes is what the threat model asks
RING_BITS = 64
_KEY_WORDS = KEY_BYTES // 8
_CHUNK_BYTES = 1 << 20
_ZEROS = bytes(_CHUNK_BYTES)  # encrypting zeros yields the keystream itself
_CPU = torch.device("cpu")


def new_key() -> bytes:
    """A fresh 256-bit stream key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def key_to_tensor(key: bytes) -> torch.Tensor:
    """A key as 4 int64, to send it as CrypTen sends its seeds."""
    return torch.frombuffer(bytearray(key), dtype=torch.int64).clone()


def tensor_to_key(words: torch.Tensor) -> bytes:
    return words.contiguous().numpy().tobytes()


class KeyStream:
    """The ChaCha20 keystream of one key, read as int64 words; equal keys, equal words."""

    device = _CPU  # CrypTen's dealer asks its generators for their device

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise UnsafeConfigurationError(
                f"a mask stream key must be {KEY_BYTES} bytes, got {len(key)}; "
                "draw it with secure_ml.sharing.csprng.new_key()"
            )
        # every key is fresh and used for one stream only, so a fixed nonce is safe
        self._encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
        #: names the key (in tests) without revealing it: a SHA-256 prefix
        self.fingerprint = hashlib.sha256(key).hexdigest()[:16]
        self.key_bits = 8 * len(key)

    def words(self, count: int) -> torch.Tensor:
        """The next ``count`` int64 words of the stream (uniform over all 2^64 values)."""
        out = torch.empty(count, dtype=torch.int64)
        view = memoryview(out.numpy()).cast("B")
        for start in range(0, len(view), _CHUNK_BYTES):
            piece = view[start : start + _CHUNK_BYTES]
            self._encryptor.update_into(memoryview(_ZEROS)[: len(piece)], piece)
        return out

    def ring_elements(self, size: torch.Size) -> torch.Tensor:
        return self.words(size.numel()).view(size)

    def kbit(self, size: torch.Size, bitlength: int) -> torch.Tensor:
        """Uniform over [0, 2^bitlength): the low bits of uniform words."""
        if not 1 <= bitlength <= RING_BITS:
            raise ValueError(f"bitlength must be in 1..{RING_BITS}, got {bitlength}")
        words = self.ring_elements(size)
        return words if bitlength == RING_BITS else words & ((1 << bitlength) - 1)


# ------------------------------------------ CrypTen's rng functions, on streams --
def _shape(size: Any) -> torch.Size:
    return torch.Size([size]) if isinstance(size, int) else torch.Size(size)


def _stream(generator: Any, device: Any) -> KeyStream:
    if device is not None and torch.device(device).type != "cpu":
        raise UnsafeConfigurationError(
            f"mask streams run on the CPU only, not on {device}; keep shares on the CPU"
        )
    if generator is None:  # CrypTen's default: the party's own local generator
        generator = load_crypten().generators["local"].get(_CPU)
    if not isinstance(generator, KeyStream):
        raise UnsafeConfigurationError(
            f"secret-sharing randomness was requested from {type(generator).__name__}, "
            "not from a ChaCha20 key stream; draw masks only inside a Session"
        )
    return generator


def random_ring_element(
    size: Any, ring_size: int = 2**RING_BITS, generator: Any = None, device: Any = None
) -> torch.Tensor:
    """``crypten.common.rng.generate_random_ring_element``, from a key stream."""
    if ring_size != 2**RING_BITS:
        raise ValueError(f"only the ring Z_2^{RING_BITS} is supported, got size {ring_size}")
    return _stream(generator, device).ring_elements(_shape(size))


def random_kbit_tensor(
    size: Any, bitlength: int | None = None, generator: Any = None, device: Any = None
) -> torch.Tensor:
    """``crypten.common.rng.generate_kbit_random_tensor``, from a key stream."""
    bits = RING_BITS if bitlength is None else bitlength
    return _stream(generator, device).kbit(_shape(size), bits)


# ------------------------------------------------------------ key exchange --
def setup_party_streams() -> None:
    """A compute party's ``prev``/``next``/``local`` streams (CrypTen's ``_setup_prng``).

    Sends a fresh key to the next rank, receives the previous rank's; the
    ``global`` generator gets a 64-bit seed broadcast by rank 0 (not mask
    material, see the module docstring).
    """
    crypten = load_crypten()
    comm = crypten.communicator.get()
    world_size, rank = comm.get_world_size(), comm.get_rank()
    next_key = new_key()
    prev_words = key_to_tensor(next_key)
    if world_size >= 2:
        received = torch.empty(_KEY_WORDS, dtype=torch.int64)
        sent = comm.isend(key_to_tensor(next_key), (rank + 1) % world_size)
        got = comm.irecv(received, src=(rank - 1) % world_size)
        sent.wait()
        got.wait()
        prev_words = received
    global_seed = torch.tensor(int.from_bytes(os.urandom(8), "big") - 2**63)
    global_seed = comm.broadcast(global_seed, 0).item()
    streams = {
        "prev": KeyStream(tensor_to_key(prev_words)),
        "next": KeyStream(next_key),
        "local": KeyStream(new_key()),
        # public by design (all parties hold it; CrypTen draws only dropout masks from
        # it), so torch's generator is fine here: it hides nothing from anyone
        "global": torch.Generator(device=_CPU).manual_seed(global_seed),
    }
    for name, stream in streams.items():
        crypten.generators[name].clear()  # drops CUDA generators: streams are CPU-only
        crypten.generators[name][_CPU] = stream


def setup_client_stream(client: Any) -> None:
    """A compute party receives its dealer stream key (CrypTen's TTPClient set-up)."""
    comm = load_crypten().communicator.get()
    words = torch.empty(_KEY_WORDS, dtype=torch.int64)
    comm.links.recv(comm.get_ttp_rank(), words)
    client.generator = KeyStream(tensor_to_key(words))
    client.generator_cuda = None


def setup_dealer_streams(server: Any) -> None:
    """The dealer draws one key per compute party and sends each its own."""
    comm = load_crypten().communicator.get()
    world_size = comm.get_world_size()
    keys = [new_key() for _ in range(world_size)]
    sends = [comm.links.post_send(i, key_to_tensor(keys[i])) for i in range(world_size)]
    server.generators = [KeyStream(key) for key in keys]
    server.generators_cuda = [None] * world_size
    for send in sends:
        send.wait()


# ----------------------------------------------------------------- install --
def _rng_targets(crypten: Any) -> list[tuple[Any, str, Any]]:
    """Every module attribute through which CrypTen draws masks, with its replacement."""
    ttp = crypten.mpc.provider.ttp_provider
    modules = [
        crypten.common.rng,
        ttp,
        crypten.mpc.provider.tfp_provider,
        crypten.mpc.primitives.arithmetic,
        crypten.mpc.primitives.binary,
    ]
    replacements = {
        "generate_random_ring_element": random_ring_element,
        "generate_kbit_random_tensor": random_kbit_tensor,
    }
    targets = [
        (module, name, function)
        for module in modules
        for name, function in replacements.items()
        if hasattr(module, name)
    ]
    client_cls = ttp.TTPClient._TTPClient__TTPClient
    targets += [
        (crypten, "_setup_prng", setup_party_streams),
        (client_cls, "_setup_generators", setup_client_stream),
        (ttp.TTPServer, "_setup_generators", setup_dealer_streams),
    ]
    return targets


@contextmanager
def mask_streams() -> Iterator[None]:
    """Inside the block CrypTen draws every mask from ChaCha20 key streams.

    Replaces CrypTen's rng functions (in every module that imported them) and
    its seed set-up functions; on exit restores them and the generators.
    """
    crypten = load_crypten()
    generators = {name: dict(by_device) for name, by_device in crypten.generators.items()}
    try:
        with patched(_rng_targets(crypten)):
            yield
    finally:
        for name, by_device in generators.items():
            crypten.generators[name].clear()
            crypten.generators[name].update(by_device)
