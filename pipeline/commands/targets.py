"""`tfship targets`: list the known targets."""
from __future__ import annotations

import argparse


def register(subparsers, common) -> None:
    subparsers.add_parser("targets", help="list the known targets").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from targets import REGISTRY

    for name in REGISTRY.names():
        print(f"{name:12} {REGISTRY.get(name).description}")
    return 0
