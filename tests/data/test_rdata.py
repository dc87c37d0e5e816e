"""The R lazy-load reader on hand-made XDR serializations (the shapes Debian's r-cran-janeaustenr holds)."""

import struct
import zlib

from chrono_membench.data.rdata import lazy_load, unserialize

HEADER = b"X\n" + struct.pack(">iii", 2, 0x040000, 0x020300)
NIL = struct.pack(">i", 254)


def charsxp(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">ii", 9 | (1 << 15), len(raw)) + raw  # 1 << 15: the UTF-8 encoding bit (ignored)


def strsxp(items) -> bytes:
    return struct.pack(">ii", 16, len(items)) + b"".join(charsxp(s) for s in items)


def named(kind: int, items: list[bytes], names: list[str]) -> bytes:
    """A vector with a names attribute: flags carry the has-attribute bit, then the tagged pairlist."""
    body = struct.pack(">ii", kind | (1 << 9), len(items)) + b"".join(items)
    tag = struct.pack(">i", 1) + charsxp("names")
    return body + struct.pack(">i", 2 | (1 << 10)) + tag + strsxp(names) + NIL


def test_unserialize_character_vectors_named_lists_and_references():
    assert unserialize(HEADER + strsxp(["EMMA", "", "By Jane Austen"])) == ["EMMA", "", "By Jane Austen"]
    obj = unserialize(HEADER + named(19, [strsxp(["a"]), struct.pack(">ii", 13, 2) + struct.pack(">ii", 7, 9)],
                                     ["text", "span"]))
    assert obj == [["a"], [7, 9]] and obj.attributes["names"] == ["text", "span"]


def test_lazy_load_reads_each_variable_at_its_offset():
    chunks, offsets, rdb = {"emma": strsxp(["EMMA", "Chapter 1"]), "persuasion": strsxp(["Persuasion"])}, [], b""
    for payload in chunks.values():
        blob = struct.pack(">i", len(HEADER + payload)) + zlib.compress(HEADER + payload)
        offsets.append(struct.pack(">ii", 13, 2) + struct.pack(">ii", len(rdb), len(blob)))
        rdb += blob
    index = named(19, [named(19, offsets, list(chunks)), struct.pack(">ii", 10, 1) + struct.pack(">i", 1)],
                  ["variables", "compressed"])
    rdx = struct.pack(">i", len(HEADER + index)) + zlib.compress(HEADER + index)
    assert lazy_load(rdx, rdb) == {"emma": ["EMMA", "Chapter 1"], "persuasion": ["Persuasion"]}
