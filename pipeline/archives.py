"""Archives tfship opens itself (`.npz` data, `.keras` models are zip files; `.h5` models),
read as input that may have been made to hurt: sizes are taken from headers and checked
before a byte is decompressed.

- A zip's member count comes from its end record before `zipfile` builds one object per member.
- A member that declares more than `BOMB_FLOOR` bytes at more than `BOMB_RATIO` times its
  compressed size is a decompression bomb (real weights and data compress about 1:1 to 10:1;
  4 GiB of zeros deflate to 4 MB). Stored (uncompressed) members never are.
- A member name that is absolute or climbs out with `..` is refused (nothing is extracted,
  but a loader that extracts would write it there).
- A `.npy` member's header is parsed by hand (bounded; no pickle) and must agree with the
  member's size; `read_rows` then reads only the leading rows a run uses.
- An `.h5` file's datasets declare their sizes: the same bomb rule, and no external links or
  external storage (they would read other files on the machine).

Every refusal is an `ArchiveRefused` sentence; callers add the config's file:line.
"""
from __future__ import annotations

import ast
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOMB_RATIO = 100
BOMB_FLOOR = 64 << 20
MAX_MEMBERS = 100_000
MAX_NPY_HEADER = 64 << 10  # NumPy writes a few hundred bytes; it refuses over 10,000 itself
MAX_H5_OBJECTS = 200_000
NPY_MAGIC = b"\x93NUMPY"


class ArchiveRefused(Exception):
    """One sentence: what in the archive is refused and why (`member`: the array or file it is about)."""

    def __init__(self, message: str, member: str | None = None):
        super().__init__(message)
        self.member = member


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _member_count(path: Path) -> int | None:
    """Members the end-of-central-directory record declares (zip64 aware); None when absent."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        tail_size = min(size, 22 + 0xFFFF)
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return None
        count = struct.unpack_from("<H", tail, at + 10)[0]
        if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
            record = struct.unpack_from("<Q", tail, at - 12)[0]
            f.seek(record)
            head = f.read(56)
            if len(head) == 56 and head[:4] == b"PK\x06\x06":
                count = struct.unpack_from("<Q", head, 32)[0]
        return count


def open_zip(path: Path, what: str = "archive") -> zipfile.ZipFile:
    """The zip at `path`, once its end record declares at most MAX_MEMBERS members."""
    count = _member_count(path)
    if count is not None and count > MAX_MEMBERS:
        raise ArchiveRefused(f"the {what} declares {count:,} members; at most {MAX_MEMBERS:,} are read")
    return zipfile.ZipFile(path)


def bomb(info: zipfile.ZipInfo) -> str | None:
    """Why `info` is a decompression bomb, or None."""
    if info.file_size > BOMB_FLOOR and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
        return (
            f"'{info.filename}' expands from {gib(info.compress_size)} to {gib(info.file_size)} "
            f"({info.file_size // max(info.compress_size, 1):,}:1): a decompression bomb (real weights and data compress "
            f"far less than {BOMB_RATIO}:1), refused before decompressing it"
        )
    return None


def climbs_out(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def check_members(archive: zipfile.ZipFile, budget: int | None, what: str) -> None:
    """Names that stay inside, no bomb, and declared sizes that fit in `budget` bytes in all."""
    total = 0
    for info in archive.infolist():
        if climbs_out(info.filename):
            raise ArchiveRefused(f"the {what} holds a member named '{info.filename}', which points outside the archive's folder; refused before reading it")
        why = bomb(info)
        if why:
            raise ArchiveRefused(why)
        total += info.file_size
    if budget is not None and total > budget:
        raise ArchiveRefused(f"the {what}'s members declare {gib(total)} once decompressed; {gib(budget)} of memory is available")


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the data

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> NpyHeader:
    """The header of the .npy member `info`, checked against the member's declared size."""
    with archive.open(info) as stream:
        lead = stream.read(8)
        if len(lead) < 8 or lead[:6] != NPY_MAGIC:
            raise ArchiveRefused(f"'{info.filename}' is not a NumPy array (no .npy header)")
        major = lead[6]
        if major == 1:
            size_field, start = 2, 10
        elif major in (2, 3):
            size_field, start = 4, 12
        else:
            raise ArchiveRefused(f"'{info.filename}' has .npy format version {major}.{lead[7]}, which NumPy does not write")
        raw = stream.read(size_field)
        length = struct.unpack("<H" if size_field == 2 else "<I", raw)[0] if len(raw) == size_field else -1
        if length > MAX_NPY_HEADER:
            raise ArchiveRefused(f"'{info.filename}' declares a {gib(length)} .npy header; NumPy writes a few hundred bytes, at most {MAX_NPY_HEADER:,} are read")
        text = stream.read(length) if length >= 0 else b""
    if length < 0 or len(text) < length:
        raise ArchiveRefused(f"'{info.filename}' ends inside its .npy header (a truncated file)")
    try:
        fields = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
        shape, fortran = tuple(fields["shape"]), bool(fields["fortran_order"])
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"shape {shape}")
    except (ValueError, TypeError, KeyError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ArchiveRefused(f"'{info.filename}' has an unreadable .npy header ({type(exc).__name__}: {str(exc)[:80]})") from None
    header = NpyHeader(shape, dtype, fortran, start + length)
    if dtype.hasobject:
        return header  # its size is pickle's; the caller refuses object arrays
    if header.offset + header.data_bytes != info.file_size:
        raise ArchiveRefused(
            f"'{info.filename}': its .npy header declares {list(shape)} {dtype} ({gib(header.data_bytes)} of data), "
            f"but the archive holds {gib(max(info.file_size - header.offset, 0))} for it; the file was altered or truncated"
        )
    return header


def read_rows(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: NpyHeader, rows: int) -> np.ndarray:
    """The first `rows` rows of a .npy member, reading (and decompressing) only those.

    A Fortran-order array with more than one dimension keeps rows apart, so it is read
    whole (the caller has checked that it fits) and cut."""
    whole = header.fortran_order and len(header.shape) > 1
    rows = min(rows, header.rows)
    count = (header.rows if whole else rows) * math.prod(header.shape[1:]) if header.shape else 1
    out = np.empty(count, dtype=header.dtype)
    view = memoryview(out).cast("B")
    with archive.open(info) as stream:
        stream.read(header.offset)
        got = 0
        while got < len(view):
            n = stream.readinto(view[got:got + (16 << 20)])  # in pieces: zipfile reads each into a new buffer first
            if not n:
                raise ArchiveRefused(f"'{info.filename}' ends after {got:,} of {len(view):,} bytes of data (a truncated file)")
            got += n
    if not header.shape:
        return out.reshape(())
    if whole:
        return out.reshape(header.shape, order="F")[:rows].copy()
    return out.reshape((rows,) + header.shape[1:])


class NpzReader:
    """A `.npz` read array by array from its headers: `names` lists every array, `headers(names)`
    checks those (no bomb, a readable header that agrees with the archive, no pickle) and
    `read(headers, rows)` reads their leading rows. Between the two, the caller checks that
    what `headers` declare fits (`fits`)."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                raise ArchiveRefused("it holds a single array, not named arrays (written by np.save, not np.savez)")
        self.archive = open_zip(path, "data file")
        self.members = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i for i in self.archive.infolist()}
        self.names = sorted(self.members)

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc) -> None:
        self.archive.close()

    def headers(self, names) -> dict[str, NpyHeader]:
        out = {}
        for name in dict.fromkeys(names):
            info = self.members.get(name)
            if info is None:
                continue  # the caller names what is missing, with `names`
            try:
                why = bomb(info)
                if why:
                    raise ArchiveRefused(why)
                out[name] = read_npy_header(self.archive, info)
            except ArchiveRefused as exc:
                raise ArchiveRefused(str(exc), member=name) from None
            if out[name].dtype.hasobject:
                raise ArchiveRefused("it holds object arrays, which need pickle to load (refused: a data file must not run code)")
        return out

    def read(self, headers: dict[str, NpyHeader], rows: int | None = None) -> dict[str, np.ndarray]:
        return {name: read_rows(self.archive, self.members[name], h, h.rows if rows is None else rows) for name, h in headers.items()}


def bytes_to_read(headers: dict[str, NpyHeader], rows: int | None = None) -> int:
    """Memory `NpzReader.read(headers, rows)` takes (a Fortran-order array is read whole)."""
    total = 0
    for h in headers.values():
        whole = rows is None or (h.fortran_order and len(h.shape) > 1)
        total += h.data_bytes if whole else min(h.rows, rows) * h.row_bytes
    return total


def check_h5(path: Path, budget: int | None) -> None:
    """Datasets that declare what they store, nothing outside the file, at most MAX_H5_OBJECTS objects."""
    import h5py

    total = 0
    seen: set = set()
    with h5py.File(path, "r") as f:
        stack = [f]
        while stack:
            group = stack.pop()
            for name in group:
                if len(seen) >= MAX_H5_OBJECTS:
                    raise ArchiveRefused(f"the file holds more than {MAX_H5_OBJECTS:,} groups and datasets; a Keras model holds a few per layer")
                link = group.get(name, getlink=True)
                where = f"{group.name.rstrip('/')}/{name}"
                if isinstance(link, h5py.ExternalLink):
                    raise ArchiveRefused(f"'{where}' is a link to {link.filename}:{link.path}, another file; a model file must hold its own weights")
                if isinstance(link, h5py.SoftLink):
                    continue  # another name for an object inside the file, sized where it lives
                obj = group[name]
                if hash(obj.id) in seen:  # h5py hashes an object by its file and address: hard links meet here
                    continue
                seen.add(hash(obj.id))
                if isinstance(obj, h5py.Group):
                    stack.append(obj)
                    continue
                if not isinstance(obj, h5py.Dataset):
                    continue  # a named datatype
                if obj.external or obj.is_virtual:
                    raise ArchiveRefused(f"dataset '{where}' keeps its data in other files ({'virtual' if obj.is_virtual else obj.external[0][0]}); a model file must hold its own weights")
                declared = int(obj.size) * obj.dtype.itemsize
                stored = obj.id.get_storage_size()
                if declared > BOMB_FLOOR and declared > BOMB_RATIO * max(stored, 1):
                    raise ArchiveRefused(
                        f"dataset '{where}' declares {gib(declared)} but stores {gib(stored)}: a decompression bomb "
                        f"(real weights compress far less than {BOMB_RATIO}:1), refused before reading it"
                    )
                total += declared
    if budget is not None and total > budget:
        raise ArchiveRefused(f"its datasets declare {gib(total)}; {gib(budget)} of memory is available")
