"""The ChaCha20 mask streams: keys, determinism, exact ranges, and the install seam."""

from __future__ import annotations

import pytest
import torch

from secure_ml.compat import load_crypten
from secure_ml.errors import UnsafeConfigurationError
from secure_ml.sharing import csprng
from secure_ml.sharing.csprng import KeyStream


def test_keys_are_256_bits_from_os_urandom(monkeypatch):
    asked = []

    def urandom(n):
        asked.append(n)
        return bytes(range(n))

    monkeypatch.setattr(csprng.os, "urandom", urandom)
    assert csprng.new_key() == bytes(range(32))
    assert asked == [32]
    assert csprng.KEY_BYTES * 8 >= 128


def test_fresh_keys_differ_and_give_different_streams():
    keys = {csprng.new_key() for _ in range(16)}
    assert len(keys) == 16
    streams = [KeyStream(key) for key in keys]
    assert len({s.fingerprint for s in streams}) == 16
    assert all(s.key_bits == 256 for s in streams)
    first = {tuple(s.words(4).tolist()) for s in streams}
    assert len(first) == 16


def test_short_keys_are_refused():
    for length in (8, 16, 31):
        with pytest.raises(UnsafeConfigurationError, match="32 bytes"):
            KeyStream(bytes(length))


def test_equal_keys_draw_equal_values_in_any_split():
    key = csprng.new_key()
    one, other = KeyStream(key), KeyStream(key)
    whole = one.words(3 + 5 + (1 << 18))  # crosses the 1 MiB chunk boundary
    parts = [other.words(3), other.words(5), other.words(1 << 18)]
    assert torch.equal(whole, torch.cat(parts))


def test_a_key_travels_as_four_int64():
    key = csprng.new_key()
    words = csprng.key_to_tensor(key)
    assert words.dtype == torch.int64 and words.shape == (4,)
    assert csprng.tensor_to_key(words) == key


def test_seeds_that_alias_in_torch_are_different_keys():
    seed = 12345
    aliased = [torch.Generator().manual_seed(s) for s in (seed, seed + 2**32)]
    draws = [torch.randint(0, 2**62, (8,), generator=g) for g in aliased]
    assert torch.equal(draws[0], draws[1])  # torch keeps 32 bits of the seed
    keys = [s.to_bytes(32, "little") for s in (seed, seed + 2**32)]
    streams = [KeyStream(key).words(8) for key in keys]
    assert not torch.equal(streams[0], streams[1])


def test_ring_elements_cover_all_of_z_2_64():
    words = KeyStream(csprng.new_key()).ring_elements(torch.Size([1 << 16]))
    bits = torch.stack([(words >> i) & 1 for i in range(64)])
    frequency = bits.double().mean(dim=1)
    # each of the 64 bits (the sign bit too) is set about half of the time
    assert ((frequency - 0.5).abs() < 0.02).all()
    assert words.min() < -(2**62) and words.max() > 2**62


@pytest.mark.parametrize("bitlength", [1, 7, 32, 63, 64])
def test_kbit_tensors_are_uniform_over_0_to_2_k(bitlength):
    values = KeyStream(csprng.new_key()).kbit(torch.Size([4096, 4]), bitlength)
    assert values.shape == (4096, 4)
    if bitlength < 64:
        assert values.min().item() >= 0 and values.max().item() < 2**bitlength
    low = min(bitlength, 8)  # the low bits are each set about half of the time
    # over all 16384 values: sd 0.0039, so 0.03 is 7.7 sd (per column it was 3.8 sd,
    # and one of 28 columns went past it about once in 250 runs)
    frequency = torch.stack([(values >> i) & 1 for i in range(low)]).double().mean(dim=(1, 2))
    assert ((frequency - 0.5).abs() < 0.03).all()
    top = (values >> (bitlength - 1)) & 1  # so is the top bit: the range is all of 2^k
    assert abs(top.double().mean().item() - 0.5) < 0.03


def test_crypten_rng_refuses_torch_generators():
    with pytest.raises(UnsafeConfigurationError, match="ChaCha20"):
        csprng.random_ring_element((3,), generator=torch.Generator())
    with pytest.raises(UnsafeConfigurationError, match="ChaCha20"):
        csprng.random_kbit_tensor((3,), bitlength=1, generator=torch.Generator())
    stream = KeyStream(csprng.new_key())
    assert csprng.random_ring_element(torch.Size([2, 3]), generator=stream).shape == (2, 3)
    assert csprng.random_kbit_tensor(5, bitlength=1, generator=stream).max() <= 1


def test_mask_streams_patches_every_rng_import_and_restores_it():
    crypten = load_crypten()
    modules = [
        crypten.common.rng,
        crypten.mpc.provider.ttp_provider,
        crypten.mpc.primitives.arithmetic,
    ]
    before = [m.generate_random_ring_element for m in modules]
    server = crypten.mpc.provider.ttp_provider.TTPServer
    generators = {name: dict(by_device) for name, by_device in crypten.generators.items()}
    with csprng.mask_streams():
        assert all(m.generate_random_ring_element is csprng.random_ring_element for m in modules)
        assert crypten.mpc.primitives.binary.generate_kbit_random_tensor is (
            csprng.random_kbit_tensor
        )
        assert crypten._setup_prng is csprng.setup_party_streams
        assert server._setup_generators is csprng.setup_dealer_streams
        crypten.generators["local"][torch.device("cpu")] = "replaced"
    assert [m.generate_random_ring_element for m in modules] == before
    assert crypten.generators == generators
    assert server._setup_generators is not csprng.setup_dealer_streams
