"""S/MIME's MIME layer: the header blocks, the multipart/signed parts, the inner entity.

Only header lines are parsed and bodies are sliced, never copied line by line, so a
large message costs little more than a small one here.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import os
import quopri
import re
from typing import Optional

from ssm.crypto.errors import CryptoException

# Top-level or inner MIME header blocks longer than this are not header blocks.
MAX_HEADER_BYTES = 64 * 1024

_TOKEN = re.compile(rb"^[!#-'*+.0-9A-Z^-~-]+$")


def _split_headers(data: bytes, start: int = 0) -> Optional[tuple[dict[str, str], int]]:
    """Parse an RFC 822 header block at ``data[start:]``.

    Returns (lower-cased name -> unfolded value, offset of the body), or None when the
    text there is not a header block followed by a blank line. Only the header lines
    are looked at, so this is cheap even for a large body.
    """
    headers: dict[str, str] = {}
    last: Optional[str] = None
    pos = start
    limit = min(len(data), start + MAX_HEADER_BYTES)
    while pos < limit:
        eol = data.find(b"\n", pos, limit)
        if eol < 0:
            return None
        line = data[pos:eol]
        if line.endswith(b"\r"):
            line = line[:-1]
        pos = eol + 1
        if not line:
            return (headers, pos) if headers else None
        if line[:1] in (b" ", b"\t"):
            if last is None:
                return None
            headers[last] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            return None
        last = name.decode("ascii").lower()
        headers[last] = value.strip().decode("utf-8", "replace")
    return None


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; k=v; k="v"`` -> ("type/subtype", {k: v}) with lower-case keys."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" \t;").lower()
        i = eq + 1
        while i < len(rest) and rest[i] in " \t":
            i += 1
        if i < len(rest) and rest[i] == '"':
            j = rest.find('"', i + 1)
            j = len(rest) if j < 0 else j
            if "\\" not in rest[i + 1:j]:  # the usual case: no escapes, no need to walk it
                params[key] = rest[i + 1:j]
            else:
                j = i + 1
                chars = []
                while j < len(rest) and rest[j] != '"':
                    if rest[j] == "\\" and j + 1 < len(rest):
                        j += 1
                    chars.append(rest[j])
                    j += 1
                params[key] = "".join(chars)
            semi = rest.find(";", j)
        else:
            semi = rest.find(";", i)
            params[key] = (rest[i:] if semi < 0 else rest[i:semi]).strip()
        i = len(rest) if semi < 0 else semi + 1
    return main.strip().lower(), params


def top_level(data: bytes) -> tuple[str, dict[str, str], dict[str, str], int]:
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1  # blank lines before the headers (some transports add them)
    parsed = _split_headers(data, start)
    if parsed is None or "content-type" not in parsed[0]:
        raise CryptoException("not an S/MIME message: no MIME header with a Content-Type")
    headers, body = parsed
    mime_type, params = _parse_content_type(headers["content-type"])
    return mime_type, params, headers, body


_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
_ENVELOPED_DATA_OID = bytes.fromhex("06092a864886f70d010703")


def pkcs7_kind(params: dict[str, str], data: bytes, body: int) -> str:
    """``signed-data`` or ``enveloped-data`` (or other) for an application/pkcs7-mime part.

    The smime-type parameter decides; without it, the ContentInfo's OID does."""
    kind = params.get("smime-type", "").lower()
    if kind:
        return kind
    head = b"".join(data[body:body + 200].split())[:64]
    try:
        der = base64.b64decode(head[: len(head) // 4 * 4])
    except (binascii.Error, ValueError):
        return ""
    if _SIGNED_DATA_OID in der[:24]:
        return "signed-data"
    if _ENVELOPED_DATA_OID in der[:24]:
        return "enveloped-data"
    return ""


PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")


def is_encrypted(text: str) -> bool:
    """Whether ``text`` is an S/MIME enveloped-data message, judged by its top-level
    Content-Type (not by a substring anywhere, which misreads opaque-signed messages)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        mime_type, params, _, body = top_level(data)
    except CryptoException:
        return False
    return mime_type in PKCS7_MIME and pkcs7_kind(params, data, body) == "enveloped-data"


def _find_delimiter(data: bytes, delim: bytes, start: int) -> int:
    """Offset of the next ``--boundary`` line start at or after ``start``, or -1."""
    pos = start
    while True:
        if pos == 0 and data.startswith(delim):
            hit = 0
        else:
            found = data.find(b"\n" + delim, max(pos - 1, 0))
            if found < 0:
                return -1
            hit = found + 1
        after = data[hit + len(delim): hit + len(delim) + 2]
        if after.startswith(b"--") or after[:1] in (b"", b"\r", b"\n", b" ", b"\t"):
            return hit
        pos = hit + 1


def _multipart_parts(data: bytes, body: int, boundary: str) -> list[bytes]:
    """The parts of a multipart body; the line break before a delimiter belongs to it."""
    delim = b"--" + boundary.encode("ascii", "replace")
    hit = _find_delimiter(data, delim, body)
    if hit < 0:
        raise CryptoException("malformed multipart/signed message: boundary not found")
    parts: list[bytes] = []
    while True:
        after = hit + len(delim)
        if data.startswith(b"--", after):
            return parts
        eol = data.find(b"\n", after)
        if eol < 0:
            break
        start = eol + 1
        nxt = _find_delimiter(data, delim, start)
        if nxt < 0:
            break
        end = nxt - 1
        if end > start and data[end - 1:end] == b"\r":
            end -= 1
        parts.append(data[start:end])
        hit = nxt
    raise CryptoException("truncated multipart/signed message: closing boundary missing")


def _canonical(content: bytes) -> bytes:
    """CRLF line endings, as the signer digested them (mail transport may have made LF).

    Counting is much cheaper than replacing, and the content is usually canonical already.
    """
    if content.count(b"\n") == content.count(b"\r\n"):
        return content
    return content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def signed_parts(signed_text: str) -> tuple[bytes, bytes, bool]:
    """(content, DER SignedData, detached) from a multipart/signed or opaque message."""
    if not isinstance(signed_text, str):
        raise CryptoException(f"Invalid {type(signed_text).__name__} argument: signed text expected")
    data = signed_text.encode("utf-8", "surrogateescape")
    if not data.strip():
        raise CryptoException("empty message: nothing to verify")
    mime_type, params, headers, body = top_level(data)
    if mime_type == "multipart/signed":
        boundary = params.get("boundary")
        if not boundary:
            raise CryptoException("malformed multipart/signed message: no boundary parameter")
        parts = _multipart_parts(data, body, boundary)
        if len(parts) != 2:
            raise CryptoException(f"malformed multipart/signed message: {len(parts)} parts, 2 expected")
        content, signature_part = parts
        parsed = _split_headers(signature_part)
        if parsed is None:
            raise CryptoException("malformed multipart/signed message: signature part has no headers")
        sig_headers, sig_body = parsed
        sig_type, _ = _parse_content_type(sig_headers.get("content-type", ""))
        if sig_type not in _PKCS7_SIGNATURE:
            raise CryptoException(f"malformed multipart/signed message: signature part is {sig_type!r}")
        der = decode_base64(signature_part[sig_body:], sig_headers)
        return _canonical(content), der, True
    if mime_type in PKCS7_MIME:
        kind = pkcs7_kind(params, data, body)
        if kind == "enveloped-data":
            raise CryptoException("message is encrypted: decrypt it before verifying")
        if kind != "signed-data":
            raise CryptoException(f"not a signed S/MIME message (smime-type={kind or 'missing'})")
        return b"", decode_base64(data[body:], headers), False
    raise CryptoException(f"not a signed S/MIME message (Content-Type: {mime_type})")


def decode_base64(payload: bytes, headers: dict[str, str]) -> bytes:
    cte = headers.get("content-transfer-encoding", "base64").strip().lower()
    if cte in ("binary", "8bit"):
        return payload
    if cte != "base64":
        raise CryptoException(f"unsupported Content-Transfer-Encoding {cte!r} for the PKCS#7 part")
    try:
        return base64.b64decode(payload)
    except (binascii.Error, ValueError) as e:
        raise CryptoException(f"PKCS#7 part is not valid base64: {e}") from e


_MIME_HEADERS = ("content-type", "content-transfer-encoding", "mime-version")


def plaintext(content: bytes) -> str:
    """The message text inside the signed MIME entity, as ``openssl smime -verify -text``
    plus the old SSM's decoding would give it: the header block (``Content-Type:
    text/plain`` from ``-text``, or e.g. ``text/xml`` with quoted-printable) is removed and
    the body decoded; without a MIME header block the content is the text. Line endings
    come back as LF.
    """
    parsed = _split_headers(content)
    body = content
    charset = "utf-8"
    if parsed is not None and any(name in parsed[0] for name in _MIME_HEADERS):
        headers, offset = parsed
        body = content[offset:]
        _, params = _parse_content_type(headers.get("content-type", "text/plain"))
        charset = params.get("charset", "utf-8")
        cte = headers.get("content-transfer-encoding", "7bit").strip().lower()
        if cte == "quoted-printable":
            body = quopri.decodestring(body)
        elif cte == "base64":
            try:
                body = base64.b64decode(body)
            except (binascii.Error, ValueError) as e:
                raise CryptoException(f"signed content is not valid base64: {e}") from e
        elif cte not in ("7bit", "8bit", "binary"):
            raise CryptoException(f"unsupported Content-Transfer-Encoding {cte!r} in signed content")
    try:
        codecs.lookup(charset)
    except LookupError:
        raise CryptoException(f"unknown charset {charset!r} in signed content") from None
    try:
        return body.replace(b"\r\n", b"\n").decode(charset)
    except UnicodeDecodeError as e:
        raise CryptoException(f"signed content is not valid {charset}: {e}") from e


def new_boundary(content: bytes) -> str:
    """A random MIME boundary that does not occur in ``content``."""
    while True:
        boundary = "----" + os.urandom(16).hex().upper()
        if boundary.encode("ascii") not in content:
            return boundary


def base64_lines(der: bytes, newline: bytes) -> bytes:
    """Base64 in 64-column lines (as openssl writes it), each line ended by ``newline``."""
    encoded = base64.b64encode(der)
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    return newline.join(lines) + newline

