"""Read an R package's lazy-load data (data/Rdata.rdx + Rdata.rdb) without R: the index is a compressed RDS
object naming each variable's (offset, length) in the .rdb; each chunk is a 4-byte length and a zlib (or bzip2 /
xz) stream holding one object in R's XDR serialization. Only the types package data uses are read.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib


class _Reader:
    """R's XDR serialization (format version 2/3), for the types a package's data objects use."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def take(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def header(self):
        assert self.take(2) == b"X\n", "not an XDR serialization"
        version = self.int()
        self.int(), self.int()
        if version == 3:
            self.take(self.int())

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254 or kind in (253, 252, 251, 250, 242, 241):  # NULL and the special environments
            return None
        if kind == 255:  # a reference to an earlier symbol or environment
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == 1:  # symbol
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (2, 6, 17):  # pairlist (attributes, tagged lists), language, dots
            if has_attr:
                self.item()  # a pairlist's own attributes: not needed
            tag = self.item() if has_tag else None
            head, tail = self.item(), self.item()
            return [(tag, head)] + (tail if isinstance(tail, list) else [])
        if kind == 4:  # environment: locked, enclosure, frame, hash table, attributes
            env = {}
            self.refs.append(env)
            self.int()
            for _ in range(4):
                self.item()
            return env
        if kind == 9:  # CHARSXP
            n = self.int()
            return None if n == -1 else self.take(n).decode("utf-8", errors="replace")
        if kind in (10, 13):
            n = self.int()
            value = list(struct.unpack_from(f">{n}i", self.take(4 * n)))
        elif kind == 14:
            n = self.int()
            value = list(struct.unpack_from(f">{n}d", self.take(8 * n)))
        elif kind in (16, 19, 20):  # character vector, list, expression
            value = [self.item() for _ in range(self.int())]
        elif kind == 24:
            value = self.take(self.int())
        else:
            raise ValueError(f"R serialization type {kind} is not supported")
        attributes = dict(self.item()) if has_attr else {}
        return RObject(value, attributes) if attributes else value


class RObject(list):
    """A vector with attributes (e.g. a named list: attributes["names"])."""

    def __init__(self, value, attributes):
        super().__init__(value)
        self.attributes = attributes


def unserialize(data: bytes):
    reader = _Reader(data)
    reader.header()
    return reader.item()


def _inflate(blob: bytes, kind: int) -> bytes:
    if kind == 2:
        return bz2.decompress(blob[4:])
    if kind == 3:
        return lzma.decompress(blob[5:]) if blob[4:5] == b"Z" else zlib.decompress(blob[5:])
    return zlib.decompress(blob[4:])


def lazy_load(rdx: bytes, rdb: bytes) -> dict:
    """name → object of an R lazy-load database (a package's data/Rdata.rdx + Rdata.rdb)."""
    raw = unserialize(zlib.decompress(rdx[4:]) if rdx[:2] != b"\x1f\x8b" else gzip.decompress(rdx))
    index = dict(zip(raw.attributes["names"], raw))
    compressed = index.get("compressed", [1])
    kind = compressed[0] if isinstance(compressed, list) else 1
    names = index["variables"].attributes["names"]
    out = {}
    for name, (offset, length) in zip(names, index["variables"]):
        out[name] = unserialize(_inflate(rdb[offset:offset + length], kind if kind in (2, 3) else 1))
    return out
