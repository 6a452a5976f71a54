"""Long-term party keys: one Ed25519 key pair per organisation.

Each organisation creates its own key pair on its own machine (``secure-ml
keys init --party NAME``) and gives the others only its public key, out of
band; no organisation ever holds another's private key. The channels between
parties (issue 14) authenticate each link's ephemeral key exchange with these
keys, so a peer without the right key is refused before any share moves.

Files, in the folder ``--out`` names (default ``keys/``):

- ``NAME.key``: the private key, PKCS#8 PEM, created with mode 0600 and never
  overwritten; loading refuses a file that others can read (as ssh does);
- ``NAME.pub``: one line, ``secure-ml-ed25519 <base64 of the 32-byte public
  key> NAME``, safe to send by e-mail and to commit.

``fingerprint`` is the SHA-256 of the raw public key, in groups of four hex
digits, for comparison over the phone (``secure-ml keys show``). Nothing here
logs, prints or writes a private key anywhere but its own file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secure_ml.errors import KeyMaterialError

KIND = "secure-ml-ed25519"
PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".key", ".pub"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class PublicKey:
    """A party's public key, as listed in its ``.pub`` file."""

    party: str
    raw: bytes  # the 32 bytes of the Ed25519 public key

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)

    def line(self) -> str:
        """The ``.pub`` file's line."""
        return f"{KIND} {base64.b64encode(self.raw).decode()} {self.party}\n"


def fingerprint(raw: bytes) -> str:
    """``SHA256:`` and the digest of the raw public key, in groups of four hex digits."""
    digest = hashlib.sha256(raw).hexdigest()
    return "SHA256:" + " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def init_keys(party: str, out_dir: str | Path) -> tuple[Path, PublicKey]:
    """Create ``party``'s key pair in ``out_dir``; return the private key's path and the public key.

    Refuses to replace an existing key: a new key means every other
    organisation must be given the new public key.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private_path = folder / f"{party}{PRIVATE_SUFFIX}"
    public_path = folder / f"{party}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if path.exists():
            raise KeyMaterialError(
                f"{path} already exists; secure_ml never overwrites a key. Keep it, or remove "
                "both files yourself and send the new public key to every other party"
            )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: never follow a file someone placed there; 0600 from the first byte
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = PublicKey(party=party, raw=key.public_key().public_bytes(*_RAW))
    public_path.write_text(public.line())
    return private_path, public


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """This party's private key; refused when group or others may read the file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyMaterialError(
            f"private key {path} not found; create it with secure-ml keys init"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyMaterialError(
            f"private key {path} is readable by others (mode {stat.filemode(mode)}); "
            f"run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"{path} is not an Ed25519 key (secure_ml keys are Ed25519)")
    return key


def load_public(path: str | Path) -> PublicKey:
    """A party's public key from its ``.pub`` file (or the ``.pub`` beside a ``.key``)."""
    path = Path(path)
    if path.suffix == PRIVATE_SUFFIX:
        path = path.with_suffix(PUBLIC_SUFFIX)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyMaterialError(f"public key {path} not found") from None
    except UnicodeDecodeError:
        raise KeyMaterialError(f"{path} is not a text file of a public key") from None
    return parse_public(text, source=str(path))


def parse_public(text: str, *, source: str) -> PublicKey:
    """Parse one ``.pub`` line; errors name ``source`` and what is expected."""
    expected = f"expected one line '{KIND} <base64 key> <party name>'"
    parts = text.strip().split()
    if len(parts) != 3 or parts[0] != KIND:
        raise KeyMaterialError(f"{source}: not a secure_ml public key ({expected})")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise KeyMaterialError(f"{source}: the key is not valid base64 ({expected})") from None
    if len(raw) != 32:
        raise KeyMaterialError(f"{source}: an Ed25519 public key has 32 bytes, found {len(raw)}")
    return PublicKey(party=parts[2], raw=raw)
