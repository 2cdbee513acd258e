"""``cgbpf cgroup``: what is attached where (with link ids), a tree view of a subtree,
legacy attach/detach, and pinned links."""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

from ..cgroup import Cgroup, Query, query_tree
from ..errors import BpfError
from ..kernel import Kernel
from ..link import Link, LinkInfo
from ..program import Program, programs
from ..uapi import CGROUP_PROG_TYPE, F_ALLOW_MULTI, F_ALLOW_OVERRIDE, AttachMode, AttachType
from .link import all_links, by_hook
from .names import UsageError, Words, attach_type, open_link, open_prog, supported_types, type_name
from .output import HEADER, Output, row, verb_group

PROG = "id ID | pinned PATH | name NAME"
USAGE = {
    "show": "cgbpf cgroup show PATH [effective]",
    "tree": "cgbpf cgroup tree [ROOT] [effective]",
    "attach": "cgbpf cgroup attach PATH TYPE PROG [multi | override] [replace PROG]",
    "detach": "cgbpf cgroup detach PATH TYPE [PROG]",
    "link": "cgbpf cgroup link PATH TYPE PROG pin PATH [before | after LINK] [preorder]",
}
EXAMPLES = f"""PROG: {PROG}; LINK: id ID | pinned PATH
TYPE: libbpf's names (cgroup_inet_egress, cgroup_inet4_connect, ...) or bpftool's words
(ingress, egress, sock_create, connect4, sendmsg6, device, sysctl, getsockopt, ...).
PATH: a cgroup v2 directory (relative: from the cgroup2 mount).

examples:
  cgbpf cgroup show /sys/fs/cgroup/web effective
  cgbpf -p cgroup tree
  cgbpf cgroup link web egress pinned /sys/fs/bpf/count pin /sys/fs/bpf/web-egress
  cgbpf cgroup attach web connect4 name allow_local multi
  cgbpf cgroup detach web connect4 name allow_local"""


def register(sub: Any, *, full: bool = True, verb: str | None = None) -> None:
    verb_group(sub, "cgroup", "what is attached to cgroups; attach, detach, link",
               __doc__ or "", USAGE, EXAMPLES,
               (("show", show), ("tree", tree), ("attach", attach), ("detach", detach),
                ("link", link)), full=full, verb=verb)


def flags_str(flags: int) -> str:
    """bpftool's words for a hook's flags."""
    return {F_ALLOW_MULTI: "multi", F_ALLOW_OVERRIDE: "override", 0: ""}.get(
        flags, f"unknown({flags:x})")


class Names:
    """Program names by id, each looked up once."""

    def __init__(self, k: Kernel) -> None:
        self.k, self.names = k, dict[int, str]()

    def __call__(self, prog_id: int) -> str:
        if prog_id not in self.names:
            try:
                with Program.from_id(prog_id, kernel=self.k) as p:
                    self.names[prog_id] = p.info().name
            except BpfError:
                self.names[prog_id] = ""
        return self.names[prog_id]


def entries(cgroup_id: int, hooks: Iterable[tuple[AttachType | int, Query]],
            effective: bool, names: Names,
            links: dict[tuple[int, int], list[LinkInfo]]) -> list[dict[str, Any]]:
    """bpftool's program entries of one cgroup's hooks, with the link that owns each."""
    out: list[dict[str, Any]] = []
    for at, q in hooks:
        free = [] if effective else list(links.get((cgroup_id, int(at)), ()))
        for p in q.programs:
            d: dict[str, Any] = {"id": p.id, "attach_type": type_name(at)}
            if not effective:
                d["attach_flags"] = flags_str(p.attach_flags or q.attach_flags)
            d["name"] = names(p.id)
            owner = next((i for i in free if i.prog_id == p.id), None)
            if owner is not None:
                free.remove(owner)
            if not effective:
                d["link_id"] = owner.id if owner else None
            out.append(d)
    return out


def text_lines(progs: list[dict[str, Any]], indent: str = "") -> list[str]:
    """A program table's rows."""
    out = []
    for d in progs:
        link_id = d.get("link_id")
        cells = (str(d["id"]), d["attach_type"], d.get("attach_flags", ""), d["name"],
                 f"link {link_id}" if link_id else "")
        out.append(indent + row(cells))
    return out


def header(o: Output, effective: bool, indent: str = "") -> None:
    cells = HEADER[:2] + (("",) if effective else HEADER[2:3]) + HEADER[3:4] + \
        (() if effective else HEADER[4:])
    o.line(indent + o.bold(row(cells)))


def show(k: Kernel, w: Words, o: Output) -> int:
    path = w.take("PATH")
    effective = bool(w.keyword("effective"))
    w.done()
    with Cgroup.open(path, kernel=k) as cg:
        links = {} if effective else by_hook(all_links(k))
        progs = entries(cg.id, ((at, cg.query(at, effective=effective))
                                for at in supported_types(k)), effective, Names(k), links)
    if o.json:
        o.emit([{key: v for key, v in d.items()} for d in progs])
    else:
        header(o, effective)
        for line in text_lines(progs):
            o.line(line)
    return 0


def in_use(k: Kernel, types: list[AttachType]) -> list[AttachType]:
    """The hooks that can have programs: those whose program type some loaded program has
    (one walk of the program ids instead of a query of every hook of every cgroup; a
    program loaded during the walk may be missed, as any snapshot may)."""
    loaded = {int(p.type) for p in programs(kernel=k)}
    return [t for t in types if int(CGROUP_PROG_TYPE[t]) in loaded]


def tree(k: Kernel, w: Words, o: Output) -> int:
    root = os.path.join(k.cgroup_root, w.take("ROOT")) if w and w.peek() != "effective" \
        else k.cgroup_root
    effective = bool(w.keyword("effective"))
    w.done()
    root = os.path.normpath(root)
    names = Names(k)
    links = {} if effective else by_hook(all_links(k))
    found = [(e.path, entries(e.id, e.hooks, effective, names, links))
             for e in query_tree(root, in_use(k, supported_types(k)), effective=effective,
                                 kernel=k)]
    if o.json:
        o.emit([{"cgroup": p, "programs": progs} for p, progs in found if progs])
        return 0
    tree_text(o, root, found, effective)
    return 0


def tree_text(o: Output, root: str, found: list[tuple[str, list[dict[str, Any]]]],
              effective: bool) -> None:
    """The cgroups with programs and their ancestors, as a tree below ``root`` (``found``
    is in walk order: parents first; normalised paths, so a parent is what precedes
    the last "/", cut without posixpath's generality: a few ms on 1,000 cgroups)."""
    shown = {root}
    for path, progs in found:
        p = path
        while progs and p not in shown:
            shown.add(p)
            p = p[:p.rindex("/")]
    nodes = [(p, progs) for p, progs in found if p in shown]
    header(o, effective)
    if len(nodes) == 1 and not nodes[0][1]:
        o.line(o.bold(root) + o.dim("  (no programs attached)"))
        return
    last_child = {p[:p.rindex("/")]: p for p, _ in nodes}  # each parent's last shown child
    below = {root: ""}  # what a node's descendants' lines start with
    lines = []
    for p, progs in nodes:
        if p == root:
            lines.append(o.bold(root))
        else:
            parent = p[:p.rindex("/")]
            end = last_child[parent] == p
            lines.append(below[parent] + ("└── " if end else "├── ")
                         + o.bold(p[p.rindex("/") + 1:]))
            below[p] = below[parent] + ("    " if end else "│   ")
        lines.extend(text_lines(progs, below[p] + "    "))
    o.line("\n".join(lines))


def _mode(w: Words) -> AttachMode | None:
    word = w.keyword("multi", "override")
    return {"multi": AttachMode.MULTI, "override": AttachMode.OVERRIDE}.get(word or "")


def attach(k: Kernel, w: Words, o: Output) -> int:
    path, at = w.take("PATH"), attach_type(w.take("TYPE"))
    prog_ref = w.ref("PROG", ("id", "pinned", "name"))
    mode, replace = _mode(w), None
    if w.keyword("replace"):
        replace = w.ref("replace PROG", ("id", "pinned", "name"))
    mode = mode or _mode(w)
    w.done()
    if mode is None:  # bpftool's default: no flag, an exclusive hook; replace needs multi
        mode = AttachMode.MULTI if replace else AttachMode.EXCLUSIVE
    with ExitStack() as stack:
        cg = stack.enter_context(Cgroup.open(path, kernel=k))
        prog = stack.enter_context(open_prog(k, prog_ref))
        old = stack.enter_context(open_prog(k, replace)) if replace else None
        cg.attach(prog, at, mode=mode, replace=old)
        o.done(f"program {prog.id} attached to {cg.path} {type_name(at)}"
               f" ({flags_str(int(mode)) or 'exclusive'})"
               + (f", replacing program {old.id}" if old else ""))
    return 0


def detach(k: Kernel, w: Words, o: Output) -> int:
    path, at = w.take("PATH"), attach_type(w.take("TYPE"))
    prog_ref = w.ref("PROG", ("id", "pinned", "name")) if w else None
    w.done()
    with ExitStack() as stack:
        cg = stack.enter_context(Cgroup.open(path, kernel=k))
        prog = stack.enter_context(open_prog(k, prog_ref)) if prog_ref else None
        cg.detach(prog, at)
        o.done(f"{f'program {prog.id}' if prog else 'the program'} detached from {cg.path} "
               f"{type_name(at)}")
    return 0


def link(k: Kernel, w: Words, o: Output) -> int:
    path, at = w.take("PATH"), attach_type(w.take("TYPE"))
    prog_ref = w.ref("PROG", ("id", "pinned", "name"))
    pin: str | None = None
    anchor: tuple[str, tuple[str, str]] | None = None
    preorder = False
    while w:
        word = w.take("an option")
        if word == "pin":
            pin = w.take("the pin's PATH")
        elif word in ("before", "after"):
            anchor = (word, w.ref(f"{word} LINK", ("id", "pinned")))
        elif word == "preorder":
            preorder = True
        else:
            raise UsageError(f"unexpected {word!r}; usage: {w.usage}")
    if pin is None:
        raise UsageError("cgroup link needs 'pin PATH': a link lives as long as an fd or a "
                         "pin holds it, and this command's fds close when it exits, which "
                         "would detach the program at once; pin it on a bpffs (e.g. pin "
                         "/sys/fs/bpf/NAME), or attach it legacy-style with 'cgroup attach'")
    with ExitStack() as stack:
        cg = stack.enter_context(Cgroup.open(path, kernel=k))
        prog = stack.enter_context(open_prog(k, prog_ref))
        rel: Link | None = stack.enter_context(open_link(k, anchor[1])) if anchor else None
        new = stack.enter_context(cg.link(
            prog, at, preorder=preorder, before=rel if anchor and anchor[0] == "before" else None,
            after=rel if anchor and anchor[0] == "after" else None))
        new.pin(pin)  # if this fails, closing the link detaches it: nothing is left
        o.done(f"link {new.id}: program {prog.id} on {cg.path} {type_name(at)}, pinned at "
               f"{pin}")
    return 0
