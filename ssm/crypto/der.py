"""Minimal DER reading and writing, for the few structures read below the typed parsers.

asn1crypto's strict parser finds each value's extent; the callers look only at tags and
bytes, which is all OpenSSL's name hash and the signed-attribute check need.
"""

from __future__ import annotations

from collections.abc import Iterator

from asn1crypto import parser as asn1_parser


def tlvs(data: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(class, tag, header, contents) of each value in ``data``, in order; ValueError at
    the first malformed one."""
    while data:
        length = asn1_parser.peek(data)
        class_, _method, tag, header, contents, _trailer = asn1_parser.parse(data[:length], strict=True)
        yield class_, tag, header, contents
        data = data[length:]


def universal_values(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, contents) of each value in ``data``, refusing any tag that is not universal."""
    values = []
    for class_, tag, _header, contents in tlvs(data):
        if class_ != 0:
            raise ValueError(f"unexpected tag class {class_}")
        values.append((tag, contents))
    return values


def encode(tag_byte: int, contents: bytes) -> bytes:
    """One DER value: ``tag_byte``, the definite length, ``contents``."""
    size = len(contents)
    if size < 0x80:
        return bytes([tag_byte, size]) + contents
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag_byte, 0x80 | len(length)]) + length + contents
