"""``cgbpf link``: show, pin, update, detach bpf_links (ids resolved to cgroup paths,
pins found, defunct links said so)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..cgroup import tree
from ..errors import BpfError
from ..kernel import Kernel, probe
from ..link import Link, LinkInfo
from ..link import all_links as every_link
from ..program import Program
from ..uapi import LinkType
from .names import Words, open_link, open_prog, type_name
from .output import Output, verb_group

LINK = "id ID | pinned PATH"
PROG = "id ID | pinned PATH | name NAME"
USAGE = {
    "show": f"cgbpf link show [{LINK}]",
    "pin": f"cgbpf link pin {LINK} PATH",
    "update": f"cgbpf link update {LINK} PROG [expect PROG]   (PROG: {PROG})",
    "detach": f"cgbpf link detach {LINK}",
}
EXAMPLES = """examples:
  cgbpf link show
  cgbpf -p link show pinned /sys/fs/bpf/web-egress
  cgbpf link pin id 12 /sys/fs/bpf/keep
  cgbpf link update pinned /sys/fs/bpf/web-egress name count_v2 expect name count_v1
  cgbpf link detach id 12"""


def register(sub: Any, *, full: bool = True, verb: str | None = None) -> None:
    verb_group(sub, "link", "show, pin, update, detach bpf_links", __doc__ or "", USAGE,
               EXAMPLES, (("show", show), ("pin", pin), ("update", update), ("detach", detach)),
               full=full, verb=verb)


# What the other commands share: links by hook, cgroup paths by id, pins by id.

def all_links(k: Kernel) -> list[LinkInfo]:
    """Every link (none on kernels without link ids, 5.7)."""
    if not probe.supported(k, probe.LINK_INFO):
        return []
    return every_link(kernel=k)


def by_hook(infos: Iterable[LinkInfo]) -> dict[tuple[int, int], list[LinkInfo]]:
    """Live cgroup links by (cgroup id, attach type)."""
    out: dict[tuple[int, int], list[LinkInfo]] = {}
    for i in infos:
        if i.cgroup_id and i.attach_type is not None:
            out.setdefault((i.cgroup_id, int(i.attach_type)), []).append(i)
    return out


def cgroup_paths(k: Kernel, wanted: set[int]) -> dict[int, str]:
    """The paths of the cgroups with these ids: one walk of the cgroup2 tree, which stops
    when all are found."""
    found: dict[int, str] = {}
    todo = {i for i in wanted if i}
    for path, cid in tree(k) if todo else ():
        if cid in todo:
            found[cid] = path
            todo.discard(cid)
            if not todo:
                break
    return found


def pin_files(k: Kernel, mounts: Iterable[str]) -> Iterator[str]:
    """Every file on the bpffs ``mounts``, directory by directory, by name (a directory
    that goes during the walk is passed over)."""
    for mount in mounts:
        stack = [mount]
        while stack:
            d = stack.pop()
            try:
                entries = sorted(k.list_dir(d), reverse=True)
            except OSError:
                continue
            for name, is_dir in entries:
                if is_dir:
                    stack.append(f"{d}/{name}")
            yield from (f"{d}/{name}" for name, is_dir in reversed(entries) if not is_dir)


def pins(k: Kernel, cls: type[Link] | type[Program]) -> dict[int, list[str]]:
    """Pinned paths by object id, as ``bpftool -f`` finds them: every file on the bpffs
    mounts, opened as a ``cls``."""
    out: dict[int, list[str]] = {}
    for path in pin_files(k, k.bpffs_mounts()):
        try:
            with cls.from_pin(path, kernel=k) as obj:
                out.setdefault(obj.id, []).append(path)
        except (BpfError, OSError):
            continue
    return out


def kind_name(t: LinkType | int) -> str:
    """bpftool's name of a link type (``cgroup``)."""
    return t.name.lower() if isinstance(t, LinkType) else str(t)


def link_json(i: LinkInfo, paths: dict[int, str], pinned: list[str]) -> dict[str, Any]:
    d: dict[str, Any] = {"id": i.id, "type": kind_name(i.type), "prog_id": i.prog_id}
    if i.type == LinkType.CGROUP:
        d["cgroup_id"] = i.cgroup_id
        d["attach_type"] = type_name(i.attach_type)
    d["pinned"] = pinned
    if i.type == LinkType.CGROUP:
        d["cgroup_path"] = paths.get(i.cgroup_id or 0)
        d["defunct"] = i.cgroup_id == 0
    return d


def link_text(o: Output, i: LinkInfo, paths: dict[int, str], pinned: list[str]) -> None:
    o.line(f"{o.bold(str(i.id))}: {kind_name(i.type)}  prog {i.prog_id}")
    if i.type == LinkType.CGROUP:
        where = f"cgroup {paths[i.cgroup_id]}  " if i.cgroup_id in paths else ""
        o.line(f"\t{where}cgroup_id {i.cgroup_id}  attach_type {type_name(i.attach_type)}"
               + ("  " + o.warn("defunct") + " (detached, or its cgroup was removed)"
                  if i.cgroup_id == 0 else ""))
    for p in pinned:
        o.line(f"\tpinned {p}")


def show(k: Kernel, w: Words, o: Output) -> int:
    one: LinkInfo | None = None
    extra: list[str] = []
    if w:
        ref = w.ref("LINK", ("id", "pinned"))
        w.done()
        with open_link(k, ref) as link:
            one = link.info()
        if ref[0] == "pinned":
            extra = [os.path.abspath(ref[1])]
    infos = [one] if one is not None else all_links(k)
    paths = cgroup_paths(k, {i.cgroup_id or 0 for i in infos})
    pinned = pins(k, Link) if infos else {}
    for i in infos:
        found = pinned.get(i.id, [])
        pinned[i.id] = found + [p for p in extra if p not in found]
    if o.json:
        docs = [link_json(i, paths, pinned[i.id]) for i in infos]
        o.emit(docs[0] if one is not None else docs)
    else:
        for i in infos:
            link_text(o, i, paths, pinned[i.id])
    return 0


def pin(k: Kernel, w: Words, o: Output) -> int:
    ref = w.ref("LINK", ("id", "pinned"))
    path = w.take("PATH")
    w.done()
    with open_link(k, ref) as link:
        link.pin(path)
        o.done(f"link {link.id} pinned at {path}")
    return 0


def update(k: Kernel, w: Words, o: Output) -> int:
    ref = w.ref("LINK", ("id", "pinned"))
    new_ref = w.ref("PROG", ("id", "pinned", "name"))
    old_ref = w.ref("expected PROG", ("id", "pinned", "name")) if w.keyword("expect") else None
    w.done()
    with open_link(k, ref) as link, open_prog(k, new_ref) as new:
        if old_ref is None:
            link.update(new)
        else:
            with open_prog(k, old_ref) as old:
                link.update(new, expected=old)
        o.done(f"link {link.id} now runs program {new.id}")
    return 0


def detach(k: Kernel, w: Words, o: Output) -> int:
    ref = w.ref("LINK", ("id", "pinned"))
    w.done()
    with open_link(k, ref) as link:
        link.detach()
        o.done(f"link {link.id} detached (defunct now; its pins and fds still hold it)")
    return 0
