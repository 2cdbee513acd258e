"""The ``cgbpf`` command: bpftool's cgroup, link and prog commands, with links done right
(link ids, cgroup paths, defunct links, pinned links made in one step)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from ..errors import BpfError
from ..kernel import Kernel, default_kernel
from . import cgroup, doctor, link, prog
from .names import UsageError, Words
from .output import Formatter, Output, options

EPILOG = """commands:
  cgbpf cgroup show PATH [effective]          programs attached to a cgroup, with link ids
  cgbpf cgroup tree [ROOT] [effective]        the same for a whole subtree, as a tree
  cgbpf cgroup attach PATH TYPE PROG [multi | override] [replace PROG]
  cgbpf cgroup detach PATH TYPE [PROG]
  cgbpf cgroup link PATH TYPE PROG pin PATH [before | after LINK] [preorder]
  cgbpf link show [LINK] | pin LINK PATH | update LINK PROG [expect PROG] | detach LINK
  cgbpf prog load OBJ PINDIR | show [PROG]
  cgbpf demo

  PROG: id ID | pinned PATH | name NAME     LINK: id ID | pinned PATH
  TYPE: cgroup_inet_egress, ... (libbpf) or egress, connect4, ... (bpftool)

examples:
  cgbpf cgroup tree
  cgbpf -j cgroup show /sys/fs/cgroup/web
  cgbpf cgroup link web egress pinned /sys/fs/bpf/count pin /sys/fs/bpf/web-egress
  cgbpf link show
  CGBPF_KERNEL=model cgbpf demo

exit status: 0 done, 1 failed (the error and a hint on stderr), 2 usage."""


def _demo(sub: Any) -> None:
    sub.add_parser("demo", help="a tour of cgroup bpf_link on this kernel",
                   description="a tour of cgroup bpf_link on this kernel, in a scratch "
                   "subtree removed at the end", formatter_class=Formatter)


def _words(argv: list[str]) -> tuple[str | None, str | None]:
    """The command and verb words of ``argv`` (None: none, as for ``--help``)."""
    found: list[str | None] = []
    words = iter(argv)
    for w in words:
        if w == "--kernel":
            next(words, None)
        elif not w.startswith("-"):
            found.append(w)
    found += [None, None]
    return found[0], found[1]


_GROUPS = {"cgroup": cgroup.register, "link": link.register, "prog": prog.register}


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given ``argv``, only the command and verb it asks for
    are built in full (the others' names and help stay: a mistyped word or ``--help``
    reads as before), a sixth of a quick command's time."""
    wanted, verb = _words(argv or [])
    p = argparse.ArgumentParser(prog="cgbpf", description=__doc__, epilog=EPILOG,
                                parents=[options()], formatter_class=Formatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, register in _GROUPS.items():
        register(sub, full=wanted in (name, None), verb=verb if wanted == name else None)
    doctor.register(sub, full=wanted in ("doctor", "prune", None))
    _demo(sub)
    return p


def _kernel(args: argparse.Namespace) -> Kernel:
    choice = getattr(args, "kernel", None)
    if choice == "model":
        from ..kernel import model

        return model()
    if choice == "host":
        from ..kernel import host

        return host()
    return default_kernel()


def main(argv: list[str] | None = None, *, kernel: Kernel | None = None) -> int:
    """Run one command; the exit status.  ``kernel`` (tests: a model kernel, whose state
    lives in this process) overrides ``--kernel``."""
    try:
        args = parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    except SystemExit as e:  # usage errors (2) and --help (0)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    err = sys.stderr
    if args.command == "demo":
        from .demo import run

        try:
            k: Kernel | str = kernel or _kernel(args)
        except BpfError as e:
            k = str(e)
        return run(k)
    try:
        k = kernel or _kernel(args)
        if hasattr(args, "func"):  # doctor, prune
            args.kernel_obj = k
            return int(args.func(args))
        out = Output(sys.stdout, json_=getattr(args, "json", False),
                     pretty=getattr(args, "pretty", False))
        return int(args.run(k, Words(args.words, args.usage), out))
    except UsageError as e:
        print(f"cgbpf {args.command} {getattr(args, 'verb', '')}: {e}", file=err)
        return 2
    except BrokenPipeError:  # cgbpf cgroup tree | head: the reader is gone, say nothing
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # BpfError included
        print(f"Error: {e}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
