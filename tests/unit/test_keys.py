"""Long-term party keys: creation, file modes, fingerprints, and refusals."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.exceptions import InvalidSignature

from secure_ml.cli import main
from secure_ml.errors import EXIT_CODES, KeyMaterialError, SpecError
from secure_ml.keys import fingerprint, init_keys, load_private, load_public, parse_public


def test_init_writes_a_private_key_only_its_owner_reads_and_a_matching_public_key(tmp_path):
    private_path, public = init_keys("hospital_a", tmp_path / "keys")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert public.party == "hospital_a" and len(public.raw) == 32
    assert load_public(tmp_path / "keys" / "hospital_a.pub") == public
    assert load_public(private_path) == public  # the .pub beside a .key
    # the pair belongs together: what the private key signs, the public key verifies
    signature = load_private(private_path).sign(b"transcript")
    public.verifier().verify(signature, b"transcript")
    with pytest.raises(InvalidSignature):
        public.verifier().verify(signature, b"another transcript")
    # two organisations never share a key
    assert init_keys("hospital_b", tmp_path / "keys")[1].raw != public.raw


def test_a_key_is_never_overwritten_nor_read_when_others_can(tmp_path):
    private_path, _ = init_keys("bank", tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(KeyMaterialError, match="already exists; secure_ml never overwrites"):
        init_keys("bank", tmp_path)
    assert private_path.read_bytes() == before
    os.chmod(private_path, 0o640)
    with pytest.raises(KeyMaterialError, match=r"readable by others .*chmod 600"):
        load_private(private_path)
    with pytest.raises(KeyMaterialError, match="not found; create it with secure-ml keys init"):
        load_private(tmp_path / "missing.key")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ssh-ed25519 AAAA bank", "not a secure_ml public key"),
        ("secure-ml-ed25519 not*base64 bank", "not valid base64"),
        ("secure-ml-ed25519 AAAA bank", "has 32 bytes, found 3"),
        ("", "not a secure_ml public key"),
    ],
)
def test_malformed_public_keys_are_refused_naming_the_file(text, error):
    with pytest.raises(KeyMaterialError, match=error) as refused:
        parse_public(text, source="bank.pub")
    assert str(refused.value).startswith("bank.pub: ")


def test_fingerprints_are_stable_groups_of_four_hex_digits():
    printed = fingerprint(bytes(32))  # the SHA-256 of 32 zero bytes, in groups
    assert printed == "SHA256:" + " ".join(
        "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"[i : i + 4]
        for i in range(0, 64, 4)
    )


def test_cli_init_and_show_print_the_fingerprint_and_nothing_secret(tmp_path, capsys):
    assert main(["keys", "init", "--party", "dealer", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    secret = (tmp_path / "dealer.key").read_text()
    body = "".join(line for line in secret.splitlines() if "PRIVATE KEY" not in line)
    assert body not in out and "fingerprint: SHA256:" in out
    shown = load_public(tmp_path / "dealer.pub").fingerprint
    assert main(["keys", "show", str(tmp_path / "dealer.pub")]) == 0
    assert capsys.readouterr().out.strip() == f"dealer  {shown}"
    # a second init is refused with the key error's exit code; a bad name with the spec's
    assert (
        main(["keys", "init", "--party", "dealer", "--out", str(tmp_path)])
        == EXIT_CODES[KeyMaterialError]
    )
    assert (
        main(["keys", "init", "--party", "../x", "--out", str(tmp_path)]) == EXIT_CODES[SpecError]
    )
    assert "must be a name of letters" in capsys.readouterr().err
