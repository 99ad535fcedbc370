"""Real data that ships inside installed packages, for the corpus and the calibration corpus.

Nothing is downloaded. Sources:
- scikit-learn's bundled sets: `load_digits` (1797 handwritten digits, 8x8, 10 classes;
  UCI optical recognition of handwritten digits), `load_breast_cancer` (569 tumours, 30
  measurements whose scales span 1e-3..4e3, 2 classes), `load_diabetes` (442 patients,
  10 baseline variables, a disease-progression score after one year).
- CPython's own standard library sources (the `.py` files of a fixed list of modules):
  lines of Python code and lines of English prose (comments and docstrings), and the
  token type of each character of a code line, as Python's `tokenize` reads them.

Every set has one fixed train / held-out split (a seeded permutation; held-out = every
fifth sample), so a held-out figure is always measured on samples no model trained on.
`fingerprint(...)` hashes the arrays a model trains on: the training cache keys on it.
"""
from __future__ import annotations

import functools
import hashlib
import io
import sysconfig
import tokenize
from pathlib import Path

import numpy as np

SPLIT_SEED = 20240607
HELDOUT_EVERY = 5


def split(n: int, part: str) -> np.ndarray:
    """Indices of `part` ("train" or "heldout") of a set of `n` samples."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    held = order[::HELDOUT_EVERY]
    if part == "heldout":
        return np.sort(held)
    if part == "train":
        return np.sort(np.setdiff1d(order, held))
    raise ValueError(f"part must be 'train' or 'heldout', got {part!r}")


def fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes() if a.dtype != object else "\x00".join(map(str, a.ravel())).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- scikit-learn sets


@functools.lru_cache(maxsize=None)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int32)


def digits(part: str) -> tuple[np.ndarray, np.ndarray]:
    """[n, 8, 8] grey levels in [0, 1] and labels 0..9."""
    x, y = _digits()
    idx = split(len(y), part)
    return x[idx], y[idx]


def _interpolation(size: int, n: int, shift: np.ndarray, zoom: np.ndarray) -> np.ndarray:
    """[n, size, 8] bilinear resampling matrices from 8 source pixels to `size` pixels, each
    sample shifted (in source pixels) and zoomed about the centre."""
    centre = 3.5
    out = (np.arange(size) + 0.5) * 8.0 / size - 0.5  # output pixel centres in source coordinates
    src = (out[None, :] - centre) / zoom[:, None] + centre - shift[:, None]
    lo = np.floor(src)
    frac = src - lo
    m = np.zeros((n, size, 8))
    for offset, weight in ((0, 1 - frac), (1, frac)):
        col = lo + offset
        valid = (col >= 0) & (col <= 7)
        rows, cols = np.nonzero(valid)
        m[rows, cols, col[valid].astype(int)] += weight[valid]
    return m


def upsample(images: np.ndarray, size: int, seed: int | None = None) -> np.ndarray:
    """[n, 8, 8] -> [n, size, size] by bilinear interpolation; with `seed`, each image is
    also shifted by up to 0.75 source pixels and zoomed by 0.9..1.1 (training augmentation)."""
    n = len(images)
    if seed is None:
        shift_r = shift_c = np.zeros(n)
        zoom = np.ones(n)
    else:
        rng = np.random.default_rng(seed)
        shift_r, shift_c = rng.uniform(-0.75, 0.75, n), rng.uniform(-0.75, 0.75, n)
        zoom = rng.uniform(0.9, 1.1, n)
    rows, cols = _interpolation(size, n, shift_r, zoom), _interpolation(size, n, shift_c, zoom)
    return np.einsum("nik,nkl,njl->nij", rows, images.astype(np.float64), cols).astype(np.float32)


def digit_images(part: str, size: int, low: float = 0.0, high: float = 1.0, channels: int = 3,
                 seed: int | None = None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Digits as [n, size, size, channels] images in [low, high] (ink is `high`); `seed`
    augments (see `upsample`); `n` takes the first n (cycling through the set when larger)."""
    x, y = digits(part)
    if n is not None:
        idx = np.arange(n) % len(y)
        x, y = x[idx], y[idx]
    image = np.clip(upsample(x, size, seed), 0.0, 1.0)
    image = low + (high - low) * image
    return np.repeat(image[..., None], channels, axis=-1).astype(np.float32), y


@functools.lru_cache(maxsize=None)
def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data.astype(np.float32), d.target.astype(np.int32)


def breast_cancer(part: str) -> tuple[np.ndarray, np.ndarray]:
    """[n, 30] raw measurements (scales 1e-3..4e3) and labels (0 malignant, 1 benign)."""
    x, y = _breast_cancer()
    idx = split(len(y), part)
    return x[idx], y[idx]


@functools.lru_cache(maxsize=None)
def _diabetes(scaled: bool) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=scaled)
    return d.data.astype(np.float32), d.target.astype(np.float32)


def diabetes(part: str, scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """[n, 10] baseline variables (scikit-learn's scaled copy, or the raw values) and the
    progression score [n, 1] divided by 100 (about 0.25..3.5)."""
    x, y = _diabetes(scaled)
    idx = split(len(y), part)
    return x[idx], (y[idx] / 100.0)[:, None]


# ---------------------------------------------------------------- Python's own sources

# Standard-library modules read for text (present in every CPython 3.10-3.12).
STDLIB_MODULES = (
    "argparse", "ast", "calendar", "collections/__init__", "configparser", "csv", "dataclasses", "datetime",
    "difflib", "email/message", "enum", "fractions", "ftplib", "functools", "gettext", "glob", "gzip",
    "heapq", "http/client", "http/cookiejar", "imaplib", "inspect", "ipaddress", "json/decoder", "logging/__init__",
    "mailbox", "nntplib", "optparse", "pathlib", "pickle", "pprint", "pydoc", "queue", "random", "shutil",
    "smtplib", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "tokenize", "traceback", "typing", "unittest/case", "urllib/parse", "urllib/request", "uuid", "zipfile",
)
TEXT_LENGTH = 64  # characters kept per line
PROSE, CODE = 1, 0

# Token classes of a code character (the tagger's targets).
TAGS = ("space", "name", "keyword", "operator", "number", "string")


def _stdlib_sources() -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for name in STDLIB_MODULES:
        path = root / f"{name}.py"
        if path.is_file():
            found.append((name, path.read_text(encoding="utf-8", errors="replace")))
    return found


def _classify_lines(source: str) -> tuple[list[tuple[str, int]], list[tuple[str, list[int]]]]:
    """(line, PROSE|CODE) pairs and, for code lines, per-character token tags."""
    import keyword

    lines = source.splitlines()
    kind: dict[int, set] = {}
    tags: dict[int, list[int]] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [], []
    previous = tokenize.NEWLINE
    for tok in tokens:
        (r0, c0), (r1, c1) = tok.start, tok.end
        if tok.type == tokenize.COMMENT:
            kind.setdefault(r0, set()).add("comment")
        elif tok.type == tokenize.STRING and r1 > r0 and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL):
            for r in range(r0 + 1, r1):  # the inner lines of a docstring-like string statement
                kind.setdefault(r, set()).add("docstring")
        elif tok.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING):
            for r in range(r0, r1 + 1):
                kind.setdefault(r, set()).add("code")
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok.type
        if r0 == r1 and tok.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING):
            tag = {tokenize.NAME: "keyword" if keyword.iskeyword(tok.string) else "name", tokenize.OP: "operator",
                   tokenize.NUMBER: "number", tokenize.STRING: "string"}[tok.type]
            row = tags.setdefault(r0, [0] * len(lines[r0 - 1]))
            for c in range(c0, min(c1, len(row))):
                row[c] = TAGS.index(tag)
    labelled, tagged = [], []
    for r, line in enumerate(lines, start=1):
        k = kind.get(r, set())
        text = line.strip()
        if len(text) < 16:
            continue
        if k == {"comment"}:
            labelled.append((text.lstrip("#").strip()[:TEXT_LENGTH], PROSE))
        elif k == {"docstring"}:
            labelled.append((text[:TEXT_LENGTH], PROSE))
        elif "code" in k and "docstring" not in k and r in tags:
            labelled.append((text[:TEXT_LENGTH], CODE))
            indent = len(line) - len(line.lstrip())
            if "comment" not in k:
                tagged.append((text[:TEXT_LENGTH], tags[r][indent: indent + TEXT_LENGTH]))
    return labelled, tagged


@functools.lru_cache(maxsize=None)
def _python_text() -> tuple[tuple, tuple]:
    labelled, tagged = [], []
    for _, source in _stdlib_sources():
        a, b = _classify_lines(source)
        labelled += a
        tagged += b
    # One copy of each line (licence headers and idioms repeat across modules).
    seen, unique = set(), []
    for text, label in labelled:
        if text not in seen:
            seen.add(text)
            unique.append((text, label))
    seen_t, unique_t = set(), []
    for text, t in tagged:
        if text not in seen_t and len(t) == len(text):
            seen_t.add(text)
            unique_t.append((text, tuple(t)))
    return tuple(unique), tuple(unique_t)


def python_lines(part: str, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lines of the standard library's sources: [n] str (at most 64 characters, stripped;
    comment markers removed) and labels PROSE (comments, docstrings) / CODE, balanced."""
    labelled, _ = _python_text()
    texts = np.array([t for t, _ in labelled], dtype=object)
    labels = np.array([k for _, k in labelled], dtype=np.int32)
    idx = split(len(labels), part)
    texts, labels = texts[idx], labels[idx]
    count = min(int(np.sum(labels == PROSE)), int(np.sum(labels == CODE)))
    if per_class is not None:
        count = min(count, per_class)
    order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(labels))
    keep = np.concatenate([order[labels[order] == k][:count] for k in (CODE, PROSE)])
    keep = np.random.default_rng(SPLIT_SEED + 2).permutation(keep)
    return texts[keep], labels[keep]


def tagged_code(part: str) -> tuple[list[str], list[tuple[int, ...]]]:
    """Code lines and the token class (TAGS) of each character."""
    _, tagged = _python_text()
    idx = split(len(tagged), part)
    return [tagged[i][0] for i in idx], [tagged[i][1] for i in idx]


CHARSET = 96  # printable ASCII 32..126 -> ids 1..95; anything else -> 95; 0 = padding


def char_ids(texts, length: int) -> np.ndarray:
    """[n, length] int32 character ids (0-padded at the end)."""
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        codes = [min(max(ord(c) - 31, 1), CHARSET - 1) for c in str(text)[:length]]
        out[i, : len(codes)] = codes
    return out


def word_ids(texts, vocabulary: list[str], length: int) -> np.ndarray:
    """[n, length] int32 word ids: 0 padding, 1 unknown, 2.. the vocabulary's words."""
    import re

    index = {w: i + 2 for i, w in enumerate(vocabulary)}
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        words = re.findall(r"[a-z_]+|[^\sa-z_]", str(text).lower())[:length]
        out[i, : len(words)] = [index.get(w, 1) for w in words]
    return out


def top_words(texts, count: int) -> list[str]:
    import collections
    import re

    counter = collections.Counter(w for t in texts for w in re.findall(r"[a-z_]+|[^\sa-z_]", str(t).lower()))
    return [w for w, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]
