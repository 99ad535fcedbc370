"""Skips CI accepts. `.ci/run` sets TFSHIP_STRICT_SKIPS=1: a test that skips there for any
reason not listed here fails the run (tests/conftest.py), since CI installs everything the
suite needs (root, Chromium, the XLA AOT runtime, a tmpfs to mount).

Each entry is (node id pattern, reason pattern, why the skip is legitimate in CI): only a
property of the machine's CPU that no install step can give (a feature such as AMX or
AVX512-BF16 that a test of native bf16 kernels would need) belongs here. None is needed today.
"""
from __future__ import annotations

import re

ALLOWED: list[tuple[str, str, str]] = []


def disallowed(skips: list[tuple[str, str]], allowed: list[tuple[str, str, str]] = ALLOWED) -> list[tuple[str, str]]:
    """The (node id, reason) pairs of `skips` that no entry of `allowed` matches."""
    return [(node, reason) for node, reason in skips
            if not any(re.search(n, node) and re.search(r, reason) for n, r, _ in allowed)]
