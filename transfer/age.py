"""age, the file encryption format of https://age-encryption.org/v1, for X25519 recipients,
written with `cryptography`'s primitives.

Files made here are opened by any age implementation (age, rage, pyrage) and the reverse;
the tests check both ways against pyrage. This is not a new format: it is the same format
written by OpenSSL's ChaCha20-Poly1305, which runs about twice as fast as rage's on the
machines we measured and releases the GIL, so a bundle's tar and its encryption use two
cores (bench/README.md).

The format, in short (the specification is the reference):

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64 without padding>
    <the file key wrapped with ChaCha20-Poly1305, base64, lines of 64 columns>
    --- <HMAC-SHA-256 of the header up to "---", base64>
    <16-byte nonce><payload: 64 KiB chunks, each ChaCha20-Poly1305 with its own tag>

The file key is 16 random bytes. The wrap key is HKDF-SHA-256 of the X25519 shared secret,
salted with the share and the recipient, info "age-encryption.org/v1/X25519". The header's
MAC key is HKDF(file key, no salt, "header"); the payload key HKDF(file key, nonce,
"payload"). A chunk's nonce is its number (11 bytes, big-endian) and a byte that is 1 on
the last chunk only, so a stream cut at a chunk's end or extended is refused.

Keys are written in Bech32: "age1..." for a recipient (the public key) and
"AGE-SECRET-KEY-1..." for an identity (the private key).
"""

import base64
import hmac
import os
from hashlib import sha256

INTRO = b"age-encryption.org/v1\n"
STANZA_TYPE = b"X25519"
WRAP_INFO = b"age-encryption.org/v1/X25519"
CHUNK = 64 << 10
TAG = 16
NONCE = 16
COLUMNS = 64
MAX_HEADER = 64 << 10  # a hostile header is refused before it fills memory
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


class AgeError(Exception):
    """Not an age file this identity opens: another recipient's, altered, or cut."""


# --- Bech32 (BIP 173), as age writes its keys ---------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, word in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= word
    return checksum


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data, from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    accumulator, bits, out = 0, 0, []
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & ((1 << to_bits) - 1))
    if pad and bits:
        out.append((accumulator << (to_bits - bits)) & ((1 << to_bits) - 1))
    elif not pad and (
        bits >= from_bits or (accumulator << (to_bits - bits)) & ((1 << to_bits) - 1)
    ):
        return None
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    words = _regroup(data, 8, 5, True)
    checksum = _polymod(_expand(hrp) + words + [0] * 6) ^ 1
    words += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words)


def bech32_decode(hrp: str, text: str) -> bytes | None:
    """The bytes of `text` if it is Bech32 with this human-readable part, else None."""
    if text != text.lower() and text != text.upper():
        return None
    text = text.lower()
    head, _, tail = text.rpartition("1")
    if head != hrp or len(tail) < 6 or any(c not in _CHARSET for c in tail):
        return None
    words = [_CHARSET.index(c) for c in tail]
    if _polymod(_expand(hrp) + words) != 1:
        return None
    data = _regroup(words[:-6], 5, 8, False)
    return bytes(data) if data is not None else None


# --- Keys -----------------------------------------------------------------------------------


class Recipient:
    """An X25519 public key, "age1..."."""

    def __init__(self, public: bytes):
        self.public = public

    @classmethod
    def from_str(cls, text: str) -> "Recipient":
        public = (
            bech32_decode(RECIPIENT_HRP, text.strip()) if text.strip().startswith("age1") else None
        )
        if public is None or len(public) != 32:
            raise ValueError("not an age recipient")
        return cls(public)

    def __str__(self):
        return bech32_encode(RECIPIENT_HRP, self.public)


class Identity:
    """An X25519 private key, "AGE-SECRET-KEY-1..."."""

    def __init__(self, secret: bytes):
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self.secret = secret
        self._key = X25519PrivateKey.from_private_bytes(secret)

    @classmethod
    def generate(cls) -> "Identity":
        return cls(os.urandom(32))

    @classmethod
    def from_str(cls, text: str) -> "Identity":
        text = text.strip()
        secret = bech32_decode(IDENTITY_HRP, text) if text.isupper() else None
        if secret is None or len(secret) != 32:
            raise ValueError("not an age identity")
        return cls(secret)

    def to_public(self) -> Recipient:
        return Recipient(self._key.public_key().public_bytes_raw())

    def __str__(self):
        return bech32_encode(IDENTITY_HRP, self.secret).upper()


# --- Header ---------------------------------------------------------------------------------


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt, info).derive(key)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """Strict: no padding, no line breaks, and the canonical form only (as age requires)."""
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise AgeError("the header holds invalid base64") from None
    if b"=" in text or _b64(data) != text:
        raise AgeError("the header holds non-canonical base64")
    return data


def _aead(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(key)


def _shared_secret(private, public: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # a low-order point: OpenSSL refuses the all-zero secret
        raise AgeError("the header holds an invalid X25519 share") from None
    if not any(shared):
        raise AgeError("the header holds an invalid X25519 share")
    return shared


def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), header, sha256).digest()


def _wrapped_lines(body: bytes) -> bytes:
    text = _b64(body)
    lines = [text[i : i + COLUMNS] for i in range(0, len(text), COLUMNS)]
    if not lines or len(lines[-1]) == COLUMNS:
        lines.append(b"")  # the body ends on a line shorter than 64 columns
    return b"".join(line + b"\n" for line in lines)


def _header(recipient: Recipient) -> tuple[bytes, bytes]:
    """The file's header and nonce, and its payload key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    file_key = os.urandom(16)
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    wrap_key = _hkdf(
        _shared_secret(ephemeral, recipient.public), share + recipient.public, WRAP_INFO
    )
    body = _aead(wrap_key).encrypt(bytes(12), file_key, None)
    header = INTRO + b"-> X25519 " + _b64(share) + b"\n" + _wrapped_lines(body) + b"---"
    header += b" " + _b64(_header_mac(file_key, header)) + b"\n"
    nonce = os.urandom(NONCE)
    return header + nonce, _hkdf(file_key, nonce, b"payload")


def _read_line(source, header: bytearray) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = source.read(1)
        if not byte:
            raise AgeError("the file ends inside its header")
        line += byte
        if len(header) + len(line) > MAX_HEADER:
            raise AgeError("the header is too long")
    header += line
    return bytes(line[:-1])


def _read_header(source, identity: Identity) -> bytes:
    """The payload key of the file `source` starts with, read up to the payload."""
    header = bytearray()
    if _read_line(source, header) + b"\n" != INTRO:
        raise AgeError("it is not an age file (age-encryption.org/v1)")
    stanzas = []
    while True:
        line = _read_line(source, header)
        if line.startswith(b"--- "):
            mac = _unb64(line[4:])
            del header[len(header) - len(line) - 1 + 3 :]  # the MAC covers it up to "---"
            break
        if not line.startswith(b"-> "):
            raise AgeError("the header is malformed")
        arguments = line[3:].split(b" ")
        if not all(arguments) or any(c < 0x21 or c > 0x7E for c in line[3:].replace(b" ", b"")):
            raise AgeError("the header is malformed")
        body = b""
        while True:
            body_line = _read_line(source, header)
            body += body_line
            if len(body_line) > COLUMNS:
                raise AgeError("the header is malformed")
            if len(body_line) < COLUMNS:
                break
        stanzas.append((arguments, _unb64(body)))
    file_key = None
    for arguments, body in stanzas:
        if arguments[0] != STANZA_TYPE:
            continue  # another kind of recipient: not ours to open
        if len(arguments) != 2 or len(body) != 32:
            raise AgeError("the header's X25519 stanza is malformed")
        share = _unb64(arguments[1])
        if len(share) != 32:
            raise AgeError("the header's X25519 stanza is malformed")
        public = identity.to_public().public
        wrap_key = _hkdf(_shared_secret(identity._key, share), share + public, WRAP_INFO)
        try:
            file_key = _aead(wrap_key).decrypt(bytes(12), body, None)
            break
        except Exception:  # cryptography's InvalidTag: a stanza for another recipient
            continue
    if file_key is None:
        raise AgeError("it was encrypted to another recipient")
    if not hmac.compare_digest(_header_mac(file_key, bytes(header)), mac):
        raise AgeError("its header was altered")
    nonce = bytes(_read_exactly(source, NONCE))
    if len(nonce) != NONCE:
        raise AgeError("the file ends before its payload")
    return _hkdf(file_key, nonce, b"payload")


def _read_exactly(source, size: int):
    """`size` bytes of `source`, fewer only at its end; as read when one read gives them."""
    part = source.read(size)
    if len(part) == size or not part:
        return part
    data = bytearray(part)
    while len(data) < size and (part := source.read(size - len(data))):
        data += part
    return data


def _chunk_nonce(number: int, last: bool) -> bytes:
    if number >= 1 << 88:
        raise AgeError("the payload has too many chunks")
    return number.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# --- Streams --------------------------------------------------------------------------------

# Chunks sealed or opened per call: 256 kB stay in the core's cache (a megabyte at a time
# took 0.26 s to decrypt 136 MB here, 256 kB 0.21 s, one chunk of 64 kB 0.23 s).
BATCH = 4
SEALED = CHUNK + TAG


class Encrypting:
    """A writer that encrypts what it is given to `sink`, as an age file to `recipient`.
    close() writes the last chunk; memory holds a batch of chunks at a time."""

    def __init__(self, sink, recipient: Recipient):
        header, key = _header(recipient)
        self._sink, self._aead = sink, _aead(key)
        self._pending = bytearray()
        self._number = 0
        sink.write(header)

    def _seal(self, plain: memoryview, last: bool):
        """Seal `plain`, whole chunks but maybe its last, as the chunks that follow."""
        chunks = range(0, max(len(plain), 1), CHUNK)
        sealed = bytearray(len(plain) + TAG * len(chunks))
        out = memoryview(sealed)
        for n, start in enumerate(chunks):
            piece = plain[start : start + CHUNK]
            nonce = _chunk_nonce(self._number, last and n == len(chunks) - 1)
            at = start + TAG * n
            self._aead.encrypt_into(nonce, piece, None, out[at : at + len(piece) + TAG])
            self._number += 1
        self._sink.write(sealed)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self._pending:  # fill the chunk begun by the last write first
            taken = CHUNK - len(self._pending)
            self._pending += view[:taken]
            view = view[taken:]
            if not view:
                return len(data)
            self._seal(memoryview(self._pending), False)
            self._pending = bytearray()
        # A chunk is sealed only when more follows: the last one, full or not, is flagged.
        while len(view) > CHUNK:
            whole = min(BATCH, (len(view) - 1) // CHUNK) * CHUNK
            self._seal(view[:whole], False)
            view = view[whole:]
        self._pending += view
        return len(data)

    def close(self):
        # Empty only when nothing was written at all.
        self._seal(memoryview(self._pending), True)
        self._pending = bytearray()


class Decrypting:
    """A reader of the plain bytes of the age file `source` holds, for `identity`.
    read() raises AgeError as soon as a chunk fails its tag, and at the end if the file
    was cut or goes on after its last chunk; what it returned before is authentic."""

    def __init__(self, source, identity: Identity):
        self._source = source
        self._aead = _aead(_read_header(source, identity))
        self._number = 0
        self._done = False
        self._failure: AgeError | None = None
        self._left = memoryview(b"")

    def _open(self, sealed: memoryview, last: bool, into: memoryview):
        self._aead.decrypt_into(_chunk_nonce(self._number, last), sealed, None, into)

    def _next_batch(self) -> memoryview:
        """The next batch of chunks opened; those opened before a chunk that fails, with
        its error raised by the next call (what came before it is authentic)."""
        if self._failure is not None:
            raise self._failure
        sealed = memoryview(_read_exactly(self._source, BATCH * SEALED))
        out, opened = memoryview(bytearray(len(sealed))), 0  # a tag's room to spare per chunk
        try:
            for at in range(0, max(len(sealed), 1), SEALED):
                opened += self._open_chunk(sealed[at : at + SEALED], out[opened:])
        except AgeError as error:
            if not opened:
                raise
            self._failure = error
        return out[:opened]

    def _open_chunk(self, piece: memoryview, out: memoryview) -> int:
        if self._done:
            raise AgeError("it goes on after its last chunk")
        if len(piece) < TAG:
            raise AgeError("its payload was cut short")
        into = out[: len(piece) - TAG]
        # Only the tag tells whether a full chunk is the last one: the nonce's last byte.
        last = len(piece) < SEALED
        try:
            try:
                self._open(piece, last, into)
            except Exception:  # InvalidTag
                if last:
                    raise
                last = True
                self._open(piece, last, into)
        except Exception:
            raise AgeError("its payload was altered") from None
        if last and not len(into) and self._number:
            raise AgeError("its last chunk is empty")
        self._number += 1
        self._done = last
        return len(into)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (a batch's worth when no size is given); b"" at the end."""
        while not self._left:
            if self._done and self._failure is None:
                if self._source.read(1):
                    raise AgeError("it goes on after its last chunk")
                return b""
            self._left = self._next_batch()
        size = len(self._left) if size is None or size < 0 else size
        data, self._left = self._left[:size], self._left[size:]
        return bytes(data)
