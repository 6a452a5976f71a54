"""The handshake that opens an encrypted, authenticated channel on every link.

Runs right after the processes of a run have joined the process group, before
any other message (the spec check, stream keys, shares), between every pair
of processes (compute parties, the dealer, parties outside CrypTen's world),
all pairs at once. Each process knows its own long-term Ed25519 key and every
other process's public key (``[transport] keys``: a folder with ``NAME.key``
for this process and ``NAME.pub`` for every process; see ``secure_ml.keys``).

Stage by stage, for one pair A, B (what travels in the clear, and who learns what):

1. **Hello.** Every process sends every other ``HELLO``: a magic, its channel
   mode (``LOCAL``: every address it uses is loopback; ``REQUIRED``:
   encryption is on; ``OFF``: the spec switched encryption off) and a fresh
   X25519 public key. An eavesdropper learns the modes and the ephemeral
   public keys, nothing secret. The channel is encrypted when any process
   says ``REQUIRED``; a process that said ``REQUIRED`` never goes on in the
   clear (an attacker who rewrites modes only causes an abort). ``OFF`` beside
   ``REQUIRED`` means two specs disagree: every process stops.
2. **Keys.** A and B compute the X25519 secret of their ephemeral keys and a
   transcript hash over both names, ranks and hellos; HKDF-SHA256 (salt: the
   transcript) gives four 256-bit keys: a handshake key and a channel key per
   direction. Nobody else can compute them (the ephemeral secrets never
   leave their processes, and are dropped after this stage).
3. **Proof.** Each signs the transcript with its long-term key and sends the
   signature sealed (AES-GCM) under its handshake key, so an eavesdropper
   cannot test guesses of who is talking. The receiver opens it and checks it
   against the peer's public key from the keys folder; a peer that does not
   hold that private key, or a man in the middle (whose hellos change the
   transcript), is refused here, before any share or spec is exchanged
   (``ChannelError``, naming the peer and the public key's fingerprint).

From then on every message on the link is sealed with the channel key of its
direction and its sequence number as nonce (``SealedFrames``). Forward
secrecy: the long-term keys only sign; a stolen long-term key does not open a
recorded run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secure_ml.errors import ChannelError, KeyMaterialError, SpecMismatchError
from secure_ml.keys import PRIVATE_SUFFIX, PUBLIC_SUFFIX, PublicKey, load_private, load_public
from secure_ml.transport.frames import SealedFrames

LOCAL, REQUIRED, OFF = 0, 1, 2
_MODE_NAMES = {LOCAL: "local (loopback only)", REQUIRED: "encrypted", OFF: "off"}
_MAGIC = b"SMLHELO1"
_HELLO = struct.Struct(">8sB32s")
_LABEL = b"secure-ml link v1"
_SIGNED = b"secure-ml link v1 signature"
_ZERO_NONCE = bytes(12)


@dataclass(frozen=True)
class KeyRing:
    """Where this process finds its private key and every peer's public key."""

    folder: Path
    me: str

    def private(self) -> Ed25519PrivateKey:
        return load_private(self.folder / f"{self.me}{PRIVATE_SUFFIX}")

    def public(self, name: str) -> PublicKey:
        key = load_public(self.folder / f"{name}{PUBLIC_SUFFIX}")
        if key.party != name:
            raise KeyMaterialError(
                f"{self.folder / (name + PUBLIC_SUFFIX)} is {key.party}'s public key, not "
                f"{name}'s; put {name}'s own .pub file there"
            )
        return key


def channel_mode(encryption: str, rendezvous: str, iface: str | None) -> int:
    """This process's hello mode for ``[transport] encryption`` (auto | on | off)."""
    if encryption == "on":
        return REQUIRED
    if encryption == "off":
        return OFF
    return LOCAL if on_loopback(rendezvous, iface) else REQUIRED


def on_loopback(rendezvous: str, iface: str | None) -> bool:
    """Whether every byte this process sends or receives stays on loopback.

    True when the rendezvous is a file or a loopback address and gloo binds
    to a loopback address: the one its interface carries (``iface``,
    ``GLOO_SOCKET_IFNAME``), else the one this host's name resolves to, as
    gloo does. A peer on another host could not reach such a process.
    """
    url = urlparse(rendezvous)
    if url.scheme != "file" and not _is_loopback(url.hostname or ""):
        return False
    if iface:
        return iface == "lo" or _is_loopback(_interface_address(iface))
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return True  # gloo falls back to loopback when the name does not resolve
    return _is_loopback(address)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def _interface_address(iface: str) -> str:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))
        except OSError:
            return ""  # no IPv4 address: not loopback
    return socket.inet_ntoa(packed[20:24])


def establish(
    links,
    *,
    mode: int,
    names: Sequence[str],
    keys: Callable[[], KeyRing],
) -> SealedFrames | None:
    """Run the handshake with every peer; the sealed codec, or None to stay plain.

    ``keys`` is called only when the channel is encrypted (a loopback run
    needs no key files).
    """
    ephemeral = X25519PrivateKey.generate()
    mine = _HELLO.pack(_MAGIC, mode, ephemeral.public_key().public_bytes(*_RAW))
    members = list(range(links.size))
    received = links.exchange(torch.frombuffer(bytearray(mine), dtype=torch.uint8), members)
    hellos = {m: t.numpy().tobytes() for m, t in zip(members, received, strict=True)}
    modes = {m: _parse_hello(hellos[m], links.describe(m))[0] for m in members if m != links.rank}
    if not _encrypted(mode, modes, links, names):
        return None
    ring = keys()
    signer = ring.private()
    send_keys, receive_keys, proofs, transcripts = {}, {}, {}, {}
    for peer in modes:
        peer_public = X25519PublicKey.from_public_bytes(_parse_hello(hellos[peer], "")[1])
        try:
            secret = ephemeral.exchange(peer_public)
        except ValueError:
            raise ChannelError(
                f"{links.describe(peer)} sent an invalid key-exchange value; refusing the link"
            ) from None
        transcript = _transcript(links.rank, peer, names, hellos)
        keys_out = _derive(secret, transcript, links.rank < peer)
        send_keys[peer], receive_keys[peer] = keys_out["send"], keys_out["receive"]
        signature = signer.sign(_SIGNED + transcript + struct.pack(">I", links.rank))
        sealed = AESGCM(keys_out["hs_send"]).encrypt(_ZERO_NONCE, signature, transcript)
        proofs[peer] = torch.frombuffer(bytearray(sealed), dtype=torch.uint8)
        transcripts[peer] = (transcript, keys_out["hs_receive"])
    answers = links.swap(proofs)
    for peer, answer in answers.items():
        transcript, hs_receive = transcripts[peer]
        _check_proof(
            links, peer, names[peer], ring, answer.numpy().tobytes(), transcript, hs_receive
        )
    return SealedFrames(send_keys, receive_keys, describe=links.describe)


_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def _parse_hello(data: bytes, who: str) -> tuple[int, bytes]:
    magic, mode, public = _HELLO.unpack(data)
    if magic != _MAGIC or mode not in _MODE_NAMES:
        raise ChannelError(
            f"{who} did not open with a secure_ml handshake; every process of a run must "
            "run secure_ml (same version)"
        )
    return mode, public


def _encrypted(mode: int, modes: dict[int, int], links, names: Sequence[str]) -> bool:
    everyone = [mode, *modes.values()]
    if REQUIRED in everyone and OFF in everyone:
        off = [names[m] for m, v in modes.items() if v == OFF] + (
            [names[links.rank]] if mode == OFF else []
        )
        raise SpecMismatchError(
            f"{', '.join(off)} switched encryption off ([transport] encryption = 'off') while "
            "others require it; every party must run the same spec"
        )
    return REQUIRED in everyone


def _transcript(me: int, peer: int, names: Sequence[str], hellos: dict[int, bytes]) -> bytes:
    lo, hi = sorted((me, peer))
    digest = hashlib.sha256(_LABEL)
    for rank in (lo, hi):
        name = names[rank].encode()
        digest.update(struct.pack(">IH", rank, len(name)) + name + hellos[rank])
    return digest.digest()


def _derive(secret: bytes, transcript: bytes, i_am_lower: bool) -> dict[str, bytes]:
    material = HKDF(
        algorithm=hashes.SHA256(), length=128, salt=transcript, info=_LABEL + b" keys"
    ).derive(secret)
    hs_up, hs_down, up, down = (material[i : i + 32] for i in range(0, 128, 32))
    if i_am_lower:  # "up": from the lower rank to the higher
        return {"hs_send": hs_up, "hs_receive": hs_down, "send": up, "receive": down}
    return {"hs_send": hs_down, "hs_receive": hs_up, "send": down, "receive": up}


def _check_proof(
    links,
    peer: int,
    name: str,
    ring: KeyRing,
    sealed: bytes,
    transcript: bytes,
    hs_receive: bytes,
) -> None:
    public = ring.public(name)
    refused = (
        f"{links.describe(peer)} could not prove it is {name}: refusing the link before any "
        "share is exchanged"
    )
    try:
        signature = AESGCM(hs_receive).decrypt(_ZERO_NONCE, sealed, transcript)
        public.verifier().verify(signature, _SIGNED + transcript + struct.pack(">I", peer))
    except InvalidTag:
        raise ChannelError(
            f"{refused} (the key exchange was altered on the way, or the peer is not the "
            "process that sent its hello)"
        ) from None
    except InvalidSignature:
        raise ChannelError(
            f"{refused} (its signature does not verify with {name}{PUBLIC_SUFFIX}, "
            f"fingerprint {public.fingerprint}; check that file against {name}'s "
            "`secure-ml keys show`)"
        ) from None
