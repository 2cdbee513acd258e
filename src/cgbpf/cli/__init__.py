"""The ``cgbpf`` command."""

from __future__ import annotations

import argparse

from ..errors import BpfError
from ..kernel import Kernel, default_kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cgbpf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="a tour of cgroup bpf_link on this kernel")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        try:
            k: Kernel | str = default_kernel()
        except BpfError as e:
            k = str(e)
        return run(k)
    return 2
