"""Output: text for people (bpftool's layout, with link ids, cgroup paths and defunct
state; colour only on a terminal) and bpftool-shaped JSON (``-j``, ``-p``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO


class Output:
    """Where a command writes: ``json`` (compact, or ``pretty``) or text."""

    def __init__(self, out: TextIO, *, json_: bool = False, pretty: bool = False) -> None:
        self.out, self.pretty = out, pretty
        self.json = json_ or pretty
        try:
            tty = out.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.colour = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"

    def emit(self, value: Any) -> None:
        """One JSON document (``null`` for commands that only act)."""
        import json  # only JSON output pays for it

        if self.pretty:
            self.out.write(json.dumps(value, indent=4) + "\n")
        else:
            self.out.write(json.dumps(value, separators=(",", ":")) + "\n")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def _sgr(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and text else text

    def bold(self, text: str) -> str:
        return self._sgr(text, "1")

    def warn(self, text: str) -> str:
        return self._sgr(text, "1;31")

    def dim(self, text: str) -> str:
        return self._sgr(text, "2")

    def done(self, text: str) -> None:
        """What an acting command prints: ``null`` in JSON, ``text`` for people."""
        if self.json:
            self.emit(None)
        elif text:
            self.line(text)


#: bpftool's columns of ``cgroup show``, and the link column it lacks.
HEADER = ("ID", "AttachType", "AttachFlags", "Name", "Link")
WIDTHS = (8, 26, 12, 16)


def row(cells: tuple[str, ...]) -> str:
    """One line of a program table, bpftool's widths."""
    parts = [c.ljust(w) for c, w in zip(cells, WIDTHS, strict=False)] + list(cells[len(WIDTHS):])
    return " ".join(parts).rstrip()


class Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help layout (descriptions as written), with the terminal width found
    without importing shutil (a few ms of every command's start-up, help or not)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                columns = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns \
                        if sys.__stdout__ else 80
                except (ValueError, OSError):
                    columns = 80
            width = columns - 2
        super().__init__(prog, indent_increment, max_help_position, width)


Verb = Callable[..., int]


def verb_group(sub: Any, name: str, help_: str, doc: str, usage: dict[str, str],
               examples: str, verbs: Sequence[tuple[str, Verb]], *, full: bool,
               verb: str | None = None) -> None:
    """The command ``name`` with its ``verbs`` (each taking free words, run by ``fn``);
    ``full=False`` (another command was asked for): the name and its help only;
    ``verb``: the one asked for (the others: their names only)."""
    if not full:
        sub.add_parser(name, help=help_, formatter_class=Formatter)
        return
    parent = options()
    p = sub.add_parser(name, help=help_, description=doc, epilog="usage:\n  "
                       + "\n  ".join(usage.values()) + "\n\n" + examples,
                       formatter_class=Formatter)
    group = p.add_subparsers(dest="verb", required=True)
    known = {v for v, _ in verbs}
    for word, fn in verbs:
        if verb in known and word != verb:
            group.add_parser(word, formatter_class=Formatter)
            continue
        v = group.add_parser(word, parents=[parent], usage=usage[word], epilog=examples,
                             formatter_class=Formatter)
        v.add_argument("words", nargs="*", help=argparse.SUPPRESS)
        v.set_defaults(run=fn, usage=usage[word])


_OPTIONS: list[Any] = []


def options() -> Any:
    """The options every command takes, after the command words too (``cgbpf cgroup show
    X -j``): ``-j``, ``-p``, ``--kernel``.  Unset ones stay unset (SUPPRESS), so that the
    same options before the command are not overwritten."""
    if not _OPTIONS:
        p = argparse.ArgumentParser(add_help=False, formatter_class=Formatter)
        p.add_argument("-j", "--json", action="store_true", default=argparse.SUPPRESS,
                       help="JSON output, bpftool's keys (plus cgbpf's own)")
        p.add_argument("-p", "--pretty", action="store_true", default=argparse.SUPPRESS,
                       help="indented JSON output")
        p.add_argument("--kernel", choices=("host", "model"), default=argparse.SUPPRESS,
                       help="the real kernel or the model kernel (default: $CGBPF_KERNEL, "
                       "else host)")
        _OPTIONS.append(p)
    return _OPTIONS[0]
