"""transfer.age against the age test kit (C2SP/CCTV, see age_testkit/README.md) and
against pyrage (the Rust rage), an independent implementation, in both directions."""

import hashlib
import io
import os
import zlib
from pathlib import Path

import pytest

from transfer import age

KIT = Path(__file__).parent / "age_testkit"
VECTORS = sorted(p for p in KIT.iterdir() if p.name != "README.md")


def read_vector(path: Path) -> tuple[dict, bytes]:
    head, _, body = path.read_bytes().partition(b"\n\n")
    fields: dict = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return fields, body


def test_the_kit_is_all_here():
    assert len(VECTORS) == 67
    expected = [read_vector(p)[0]["expect"][0] for p in VECTORS]
    assert expected.count("success") == 14 and expected.count("payload failure") == 18


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_every_vector_of_the_age_test_kit_has_the_outcome_it_expects(path):
    """A success decrypts to the payload's hash; a header, HMAC or no-match failure is
    refused before a byte of payload; a payload failure releases only what decrypted
    before it, which must hash to the vector's payload."""
    fields, body = read_vector(path)
    expect = fields["expect"][0]
    identity = age.Identity.from_str(fields["identity"][0]) if "identity" in fields else None
    released = hashlib.sha256()
    if expect in ("header failure", "HMAC failure", "no match"):
        with pytest.raises(age.AgeError):
            age.Decrypting(io.BytesIO(body), identity or age.Identity.generate())
        return
    decrypting = age.Decrypting(io.BytesIO(body), identity)
    if expect == "success":
        while block := decrypting.read(1 << 20):
            released.update(block)
    else:
        assert expect == "payload failure"
        with pytest.raises(age.AgeError):
            while block := decrypting.read(1 << 20):
                released.update(block)
    assert released.hexdigest() == fields["payload"][0]


SIZES = [0, 1, age.CHUNK - 1, age.CHUNK, age.CHUNK + 1, 3 * age.CHUNK, 3 * age.CHUNK + 17]


def encrypted(data: bytes, recipient, write_size: int = 7000) -> bytes:
    out = io.BytesIO()
    encrypting = age.Encrypting(out, recipient)
    for start in range(0, len(data), write_size):
        encrypting.write(data[start : start + write_size])
    encrypting.close()
    return out.getvalue()


def decrypted(data: bytes, identity, read_size: int = 10_000) -> bytes:
    decrypting = age.Decrypting(io.BytesIO(data), identity)
    return b"".join(iter(lambda: decrypting.read(read_size), b""))


@pytest.mark.parametrize("size", SIZES)
def test_files_made_here_open_with_rage_and_rage_s_open_here(size):
    pyrage = pytest.importorskip("pyrage")
    data = os.urandom(size)
    ours = age.Identity.generate()
    theirs = pyrage.x25519.Identity.from_str(str(ours))
    assert str(theirs.to_public()) == str(ours.to_public())
    assert pyrage.decrypt(encrypted(data, ours.to_public()), [theirs]) == data
    # rage adds "grease" stanzas of made-up types: they are passed over.
    assert decrypted(pyrage.encrypt(data, [theirs.to_public()]), ours) == data


def test_keys_read_back_and_wrong_ones_are_refused():
    identity = age.Identity.generate()
    assert str(age.Identity.from_str(str(identity))) == str(identity)
    recipient = str(identity.to_public())
    assert recipient.startswith("age1") and len(recipient) == 62
    assert age.Recipient.from_str(recipient).public == identity.to_public().public
    flipped = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    for bad in [flipped, recipient.upper()[:10] + recipient[10:], "age1", "", str(identity)]:
        with pytest.raises(ValueError):
            age.Recipient.from_str(bad)
    for bad in [str(identity).lower(), recipient, "AGE-SECRET-KEY-1"]:
        with pytest.raises(ValueError):
            age.Identity.from_str(bad)


def test_a_file_cut_extended_altered_or_for_another_key_is_refused():
    identity = age.Identity.generate()
    data = os.urandom(3 * age.CHUNK + 5)
    sealed = encrypted(data, identity.to_public())
    header = sealed.index(b"\n---") + 1
    payload = sealed.index(b"\n", header) + 1 + age.NONCE
    chunk = age.CHUNK + age.TAG
    cases = {
        "at a chunk's end": sealed[: payload + 2 * chunk],
        "inside a chunk": sealed[: payload + chunk + 100],
        "before its payload": sealed[:payload],
        "with a byte added": sealed + b"\0",
        "with a byte after an empty payload": encrypted(b"", identity.to_public()) + b"\0",
        "with a chunk's byte flipped": flip(sealed, payload + chunk + 3),
        "with the header's byte flipped": flip(sealed, 30),
        "with the MAC's byte flipped": flip(sealed, header + 5),
    }
    for what, damaged in cases.items():
        with pytest.raises(age.AgeError):
            decrypted(damaged, identity)
            pytest.fail(f"a file {what} was read whole")
    with pytest.raises(age.AgeError, match="another recipient"):
        decrypted(sealed, age.Identity.generate())


def test_a_hostile_header_is_refused_before_it_fills_memory():
    endless = io.BytesIO(b"age-encryption.org/v1\n-> X " + b"A" * (age.MAX_HEADER * 4))
    with pytest.raises(age.AgeError, match="too long"):
        age.Decrypting(endless, age.Identity.generate())


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
