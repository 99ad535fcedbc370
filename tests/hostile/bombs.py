"""Hostile archives written at test time, cheaply: nothing here is committed.

A deflate stream of zeros is built from one compressed 16 MiB piece repeated (each piece
ends with a full flush, so it starts from an empty window and every copy inflates the same),
so a 4 GiB bomb costs 4 MB of writing. Its CRC is computed without the zeros (the CRC
register is linear over appended zero bytes: square the operator, as zlib's crc32_combine).
Zip files are written by hand, always with zip64 fields, so names and sizes can lie.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

PIECE = 16 << 20


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_append_zeros(crc: int, count: int) -> int:
    """zlib.crc32(data + bytes(count)) from crc = zlib.crc32(data), in O(log count)."""
    register = crc ^ 0xFFFFFFFF
    odd = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]  # one zero bit
    even = _gf2_square(odd)  # two
    odd = _gf2_square(even)  # four
    while count:
        even = _gf2_square(odd)  # one zero byte, then 4, 16, ... on later rounds
        if count & 1:
            register = _gf2_times(even, register)
        count >>= 1
        if not count:
            break
        odd = _gf2_square(even)
        if count & 1:
            register = _gf2_times(odd, register)
        count >>= 1
    return register ^ 0xFFFFFFFF


@dataclass(frozen=True)
class Entry:
    """One zip member as written: `data` is already compressed when `method` is 8."""

    name: str
    data: bytes
    crc: int
    size: int  # the uncompressed size the headers declare
    method: int = 0


def stored(name: str, content: bytes) -> Entry:
    return Entry(name, content, zlib.crc32(content), len(content), 0)


def deflated(name: str, content: bytes) -> Entry:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, c.compress(content) + c.flush(), zlib.crc32(content), len(content), 8)


def zeros_bomb(name: str, head: bytes, zero_bytes: int) -> Entry:
    """`head` followed by `zero_bytes` zeros (a multiple of 16 MiB), deflated about 1000:1."""
    assert zero_bytes % PIECE == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(bytes(PIECE)) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)
    data = start + piece * (zero_bytes // PIECE) + end
    return Entry(name, data, crc32_append_zeros(zlib.crc32(head), zero_bytes), len(head) + zero_bytes, 8)


def write_zip(path: Path, entries: list[Entry]) -> Path:
    """A zip archive with zip64 size fields on every member (sizes may exceed 4 GiB)."""
    out, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode()
        offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, e.size, len(e.data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, e.method, 0, 0x21, e.crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)) + name + extra
        out += e.data
        cextra = struct.pack("<HHQQQ", 1, 24, e.size, len(e.data), offset)
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, e.method, 0, 0x21, e.crc, 0xFFFFFFFF, 0xFFFFFFFF,
            len(name), len(cextra), 0, 0, 0, 0o644 << 16, 0xFFFFFFFF,
        ) + name + cextra
    cd_offset = len(out)
    out += central
    eocd64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(out))
    return path


def npy_header(shape: tuple, dtype: str = "<f4", fortran: bool = False) -> bytes:
    """The .npy header (format 1.0) NumPy writes for an array of `shape`."""
    text = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (dtype, fortran, repr(tuple(shape)))
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def write_sparse_npy_zip(path: Path, name: str, head: bytes, zero_bytes: int) -> Path:
    """An honest-looking .npz: one stored (uncompressed) member, `head` then `zero_bytes` zeros
    left as a hole in a sparse file, so a 4 GiB array costs no disk and no time to write."""
    size = len(head) + zero_bytes
    crc = crc32_append_zeros(zlib.crc32(head), zero_bytes)
    name_bytes = name.encode()
    extra = struct.pack("<HHQQ", 1, 16, size, size)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name_bytes), len(extra)) + name_bytes + extra)
        f.write(head)
        f.seek(zero_bytes, 1)
        cd_offset = f.tell()
        cextra = struct.pack("<HHQQQ", 1, 24, size, size, 0)
        central = struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
            len(name_bytes), len(cextra), 0, 0, 0, 0o644 << 16, 0xFFFFFFFF,
        ) + name_bytes + cextra
        f.write(central)
        eocd64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), cd_offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path
