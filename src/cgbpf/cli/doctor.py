"""``cgbpf doctor`` and ``cgbpf prune``: what is left over, and removing it.

:func:`findings` looks at the links, the pins on bpffs mounts and the cgroup hooks below a
root cgroup and reports:

* ``defunct_link``: a link whose cgroup_id reads 0 (detached, or its cgroup was released),
  with the pins that keep it alive (fix: unpin them);
* ``cgroup_gone``: a live link whose cgroup id is in no directory of the cgroup2 tree (the
  cgroup was removed and is not released yet, e.g. sockets created in it keep it; fix:
  unpin);
* ``exclusive_at_root``: an EXCLUSIVE or OVERRIDE program at the root of the scan, which
  makes every link (LINK_CREATE needs a MULTI hook) below it fail with EPERM;
* ``legacy_orphan``: a legacy (PROG_ATTACH) attachment whose program has no pin on any
  bpffs mount and is open in no process.  **A heuristic**: nobody can detach it through
  an owner any more, which is what a crashed agent leaves, but ``bpftool cgroup attach``
  leaves the same state on purpose.  So prune detaches these (and orphaned exclusive
  programs) only when a ROOT cgroup was given, never on a whole-system scan;
* ``stale_pin``: a pinned program of a cgroup type that is attached nowhere (no link, no
  hook in the whole cgroup2 tree) and open in no process (fix: unpin); a pinned map no
  loaded program uses and no process has open is reported, never pruned (it may keep
  state for a later load).

"Open in a process": ``/proc/*/fd`` and ``fdinfo`` on the host (processes you cannot
read are not seen), the model's fd tables on the model.  :func:`prune` does only what the
findings it is given say, re-checking each pin's object id before unlinking it.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from .. import _bpf, uapi
from ..cgroup import Cgroup, tree
from ..errors import BpfError
from ..kernel import Kernel, default_kernel
from ..link import LinkInfo, all_links
from ..program import Program, programs
from ..uapi import AttachMode, AttachType, LinkType
from .link import pin_files
from .output import Formatter

#: Finding kinds, in report order.
KINDS = ("defunct_link", "cgroup_gone", "exclusive_at_root", "legacy_orphan", "stale_pin")
_CGROUP_PROG_TYPES = frozenset(uapi.CGROUP_PROG_TYPE.values())


class Finding(NamedTuple):
    """One problem.  ``fix`` says what prune would do ("" if it does nothing);
    ``actions`` are prune's steps: ("unpin", path, object id, kind) or ("detach", cgroup path,
    attach type (libbpf's name), program id)."""

    kind: str
    message: str
    fix: str = ""
    link_id: int | None = None
    prog_id: int | None = None
    cgroup: str | None = None
    attach_type: str | None = None
    pins: Sequence[str] = ()
    actions: Sequence[tuple[Any, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["pins"], d["actions"] = list(self.pins), [list(a) for a in self.actions]
        return d


class _Pin(NamedTuple):
    path: str
    kind: str  # "link", "prog", "map" or another fd kind
    obj_id: int
    link: LinkInfo | None = None


# ------------------------------------------------------------------ what the kernel shows

def _at(value: int | None) -> str:
    """libbpf's name of an attach type (cgroup_inet_egress), or its number."""
    return uapi.name_of(value or 0).lower()


def _describe(act: tuple[Any, ...]) -> str:
    if act[0] == "unpin":
        return f"unpin {act[1]} ({act[3]} {act[2]})"
    if act[0] == "detach":
        return f"detach prog {act[3]} from {act[1]} {act[2]}"
    return " ".join(map(str, act))


def holders(k: Kernel) -> dict[str, set[int]]:
    """The ids of the bpf objects open in some process, by kind ("prog", "map", "link")."""
    held: dict[str, set[int]] = {"prog": set(), "map": set(), "link": set()}
    for kind, obj_id in k.open_bpf_objects():
        held[kind].add(obj_id)
    return held


def _walk_pins(k: Kernel, mounts: Iterable[str]) -> Iterator[_Pin]:
    for path in pin_files(k, mounts):
        pin = _read_pin(k, path)
        if pin is not None:
            yield pin


def _read_pin(k: Kernel, path: str) -> _Pin | None:
    try:
        fd = _bpf.obj_get(k, path)
    except OSError:
        return None
    try:
        kind = k.fd_kind(fd)
        if kind == "link":
            from ..link import _info

            info = _info(k, fd)
            return _Pin(path, kind, info.id, info)
        if kind == "prog":
            from ..program import _info as prog_info

            return _Pin(path, kind, prog_info(k, fd).id)
        if kind == "map":
            from ..map import _info as map_info

            return _Pin(path, kind, map_info(k, fd).id)
        return _Pin(path, kind, 0)
    except OSError:
        return None
    finally:
        k.close(fd)


def _cgroups(k: Kernel) -> dict[str, int]:
    """Every cgroup of the cgroup2 tree: path -> id."""
    return dict(tree(k))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _hooks(k: Kernel, paths: Iterable[str]) -> Iterator[tuple[str, AttachType, AttachMode,
                                                                 list[int]]]:
    """(cgroup path, attach type, mode, program ids) of every non-empty hook."""
    unsupported: set[AttachType] = set()
    for path in paths:
        try:
            cg = Cgroup.open(path, kernel=k)
        except OSError:
            continue
        with cg:
            for at in uapi.CGROUP_PROG_TYPE:
                if at in unsupported:
                    continue
                try:
                    q = cg.query(at)
                except BpfError as e:
                    if e.errno == errno.EINVAL:
                        unsupported.add(at)
                    continue
                if q.programs:
                    yield path, at, q.mode, q.ids


# ------------------------------------------------------------------------------ findings

def findings(kernel: Kernel | None = None, root: str | None = None,
             bpffs: Iterable[str] | None = None) -> list[Finding]:
    """What doctor reports for the cgroups at and below ``root`` (default: the whole
    cgroup2 tree) and the pins on the ``bpffs`` mounts (default: every mount)."""
    k = kernel or default_kernel()
    held = holders(k)  # before this function opens anything itself
    scoped = root is not None
    top = k.cgroup_root.rstrip("/") or "/"
    root = os.path.normpath(os.path.join(top, root)) if root else top
    all_mounts = k.bpffs_mounts()
    mounts = list(bpffs) if bpffs is not None else all_mounts
    pins = list(_walk_pins(k, mounts))
    pinned_elsewhere = list(_walk_pins(k, [m for m in all_mounts if m not in mounts]))
    pinned_ids: dict[str, set[int]] = {"prog": set(), "map": set(), "link": set()}
    for p in pins + pinned_elsewhere:
        pinned_ids.setdefault(p.kind, set()).add(p.obj_id)
    link_pins: dict[int, list[str]] = {}
    for p in pins:
        if p.kind == "link":
            link_pins.setdefault(p.obj_id, []).append(p.path)

    cgroups = _cgroups(k)
    paths = {cid: path for path, cid in cgroups.items()}
    every = all_links(kernel=k)
    out: list[Finding] = []

    # (a), (b): links.
    link_owned: dict[tuple[int, int, int], int] = {}
    for li in every:
        if li.type != LinkType.CGROUP:
            continue
        mine = link_pins.get(li.id, [])
        held_too = li.id in held["link"]
        owners = "" if not held_too else "; it is also open in a process, which keeps it"
        if li.cgroup_id == 0:
            if mine or not scoped:
                out.append(Finding(
                    "defunct_link",
                    f"link {li.id} (prog {li.prog_id}, {_at(li.attach_type)}) is"
                    f" defunct" + (f", kept by pin {', '.join(mine)}" if mine
                                   else ", held open by a process") + owners,
                    fix=f"unpin {', '.join(mine)}" if mine else "",
                    link_id=li.id, prog_id=li.prog_id,
                    attach_type=_at(li.attach_type), pins=mine,
                    actions=[("unpin", p, li.id, "link") for p in mine]))
            continue
        assert li.cgroup_id is not None
        link_owned[(li.cgroup_id, int(li.attach_type or 0), li.prog_id)] = \
            link_owned.get((li.cgroup_id, int(li.attach_type or 0), li.prog_id), 0) + 1
        if li.cgroup_id not in paths and (mine or not scoped):
            out.append(Finding(
                "cgroup_gone",
                f"link {li.id} (prog {li.prog_id}) is attached to cgroup id {li.cgroup_id},"
                " which is no longer in the cgroup2 tree" + (f"; pinned at {', '.join(mine)}"
                                                             if mine else "") + owners,
                fix=f"unpin {', '.join(mine)}" if mine else "",
                link_id=li.id, prog_id=li.prog_id, cgroup=f"id {li.cgroup_id}",
                attach_type=_at(li.attach_type), pins=mine,
                actions=[("unpin", p, li.id, "link") for p in mine]))

    # (c), (d): hooks.  Every hook of the tree, to know which programs are attached.
    attached: set[int] = {li.prog_id for li in every}
    for path, at, mode, ids in _hooks(k, sorted(cgroups)):
        attached.update(ids)
        if not _under(path, root):
            continue
        cid = cgroups[path]
        for pid in ids:
            key = (cid, int(at), pid)
            if link_owned.get(key, 0) > 0:
                link_owned[key] -= 1
                continue
            orphan = pid not in pinned_ids["prog"] and pid not in held["prog"]
            at_name = at.name.lower()
            detach = [("detach", path, at_name, pid)] if orphan and scoped else []
            fix = f"detach prog {pid} from {path} {at_name}" if detach else ""
            if path == root and mode != AttachMode.MULTI:
                out.append(Finding(
                    "exclusive_at_root",
                    f"prog {pid} is attached to {path} {at_name} in {mode.name.lower()} mode:"
                    f" no cgroup below can get a {at_name} link (EPERM)"
                    + ("; no pin, no process holds it" if orphan else ""),
                    fix=fix, prog_id=pid, cgroup=path, attach_type=at_name, actions=detach))
            elif orphan:
                out.append(Finding(
                    "legacy_orphan",
                    f"prog {pid} is attached to {path} {at_name} by PROG_ATTACH and has no"
                    " pin and no process holding it (its owner may have crashed; or a tool"
                    " such as bpftool attached it on purpose)",
                    fix=fix, prog_id=pid, cgroup=path, attach_type=at_name, actions=detach))

    # (e): stale pins.
    used_maps: set[int] = set()
    prog_types: dict[int, int] = {}
    for pi in programs(kernel=k):
        used_maps.update(pi.map_ids)
        prog_types[pi.id] = int(pi.type)
    for p in pins:
        if p.kind == "prog" and p.obj_id not in attached and p.obj_id not in held["prog"] \
                and prog_types.get(p.obj_id) in _CGROUP_PROG_TYPES:
            out.append(Finding(
                "stale_pin", f"{p.path}: prog {p.obj_id} is pinned but attached nowhere and"
                " open in no process", fix=f"unpin {p.path}", prog_id=p.obj_id,
                pins=[p.path], actions=[("unpin", p.path, p.obj_id, "prog")]))
        elif p.kind == "map" and p.obj_id not in used_maps and p.obj_id not in held["map"]:
            out.append(Finding(
                "stale_pin", f"{p.path}: map {p.obj_id} is pinned but no program uses it"
                " and no process has it open (not pruned: it may keep state)",
                pins=[p.path]))
    out.sort(key=lambda f: KINDS.index(f.kind))
    return out


# ---------------------------------------------------------------------------------- prune

class Action(NamedTuple):
    """One step of prune: ``what`` (as in Finding.actions), whether it was done (False
    for a dry run or a failure) and why not."""

    what: tuple[Any, ...]
    done: bool
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"action": list(self.what), "done": self.done, "error": self.error}


def prune(kernel: Kernel | None, found: Iterable[Finding], dry_run: bool = False,
          root: str | None = None) -> list[Action]:
    """Carry out the findings' actions (nothing if ``dry_run``).  A pin is unlinked only
    if it still holds the object the finding names; a detach only below ``root`` (when
    given) and only of a program still attached there."""
    k = kernel or default_kernel()
    top = k.cgroup_root.rstrip("/") or "/"
    limit = os.path.normpath(os.path.join(top, root)) if root else None
    done: list[Action] = []
    for f in found:
        for act in f.actions:
            if dry_run:
                done.append(Action(act, False, "dry run"))
                continue
            try:
                if act[0] == "unpin":
                    pin = _read_pin(k, act[1])
                    if pin is None or (pin.obj_id, pin.kind) != (act[2], act[3]):
                        done.append(Action(act, False, "the pin holds another object now"))
                        continue
                    k.unlink(act[1])
                elif act[0] == "detach":
                    _, path, at_name, pid = act
                    if limit is not None and not _under(path, limit):
                        done.append(Action(act, False, f"{path} is outside {limit}"))
                        continue
                    at = AttachType[at_name.upper()]
                    with Cgroup.open(path, kernel=k) as cg:
                        if pid not in cg.query(at).ids:
                            done.append(Action(act, False, "no longer attached there"))
                            continue
                        with Program.from_id(pid, kernel=k) as prog:
                            cg.detach(prog, at)
                else:
                    done.append(Action(act, False, "unknown action"))
                    continue
                done.append(Action(act, True))
            except OSError as e:
                done.append(Action(act, False, str(e)))
    return done


# ------------------------------------------------------------------------------ commands

def _kernel(args: argparse.Namespace) -> Kernel:
    k = getattr(args, "kernel_obj", None)
    if isinstance(k, Kernel):
        return k
    name = getattr(args, "kernel", None) or os.environ.get("CGBPF_KERNEL", "host")
    if name == "model":
        from ..kernel import model

        return model()
    return default_kernel()


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False) or getattr(args, "pretty", False))


def _dump(args: argparse.Namespace, data: Any) -> None:
    pretty = getattr(args, "pretty", False)
    import json  # only JSON output pays for it

    print(json.dumps(data, indent=2 if pretty else None))


def run_doctor(args: argparse.Namespace) -> int:
    k = _kernel(args)
    found = findings(k, args.root, args.bpffs)
    if _json(args):
        _dump(args, [f.to_json() for f in found])
    elif not found:
        print("no findings")
    else:
        for f in found:
            print(f"{f.kind}: {f.message}")
            if f.fix:
                print(f"  prune: {f.fix}")
        print(f"{len(found)} finding{'s' if len(found) != 1 else ''}"
              " (cgbpf prune [--dry-run] removes what has a 'prune:' line)")
    return 1 if found else 0


def run_prune(args: argparse.Namespace) -> int:
    k = _kernel(args)
    found = findings(k, args.root, args.bpffs)
    acts = prune(k, found, args.dry_run, args.root)
    failed = [a for a in acts if not a.done and a.error != "dry run"]
    if _json(args):
        _dump(args, [a.to_json() for a in acts])
    else:
        for a in acts:
            verb = "would " if args.dry_run else ("" if a.done else "FAILED: ")
            desc = _describe(a.what)
            print(f"{verb}{desc}" + (f" ({a.error})" if a.error and not args.dry_run else ""))
        if not acts:
            print("nothing to prune")
    if failed:
        print(f"cgbpf prune: {len(failed)} action(s) failed", file=sys.stderr)
    return 1 if failed else 0


_DOCTOR_EPILOG = """examples:
  cgbpf doctor                         the whole cgroup2 tree, every bpffs mount
  cgbpf doctor my-service --bpffs /sys/fs/bpf/my-service -j
  cgbpf prune --dry-run my-service     what prune would do
exit status: doctor 0 when clean, 1 with findings; prune 1 when an action failed."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", nargs="?", default=None, metavar="ROOT",
                   help="only cgroups at and below ROOT (relative: to the cgroup2 mount);"
                   " legacy attachments are detached by prune only with ROOT")
    p.add_argument("--bpffs", action="append", default=None, metavar="DIR",
                   help="only pins on this bpffs mount (repeatable; default: all mounts)")
    p.add_argument("-j", "--json", action="store_true", default=argparse.SUPPRESS,
                   help="JSON output")
    p.add_argument("-p", "--pretty", action="store_true", default=argparse.SUPPRESS,
                   help="indented JSON output")


_DOCTOR_HELP = "report defunct links, orphaned programs, stale pins"
_PRUNE_HELP = "remove what doctor reports as garbage"


def register(sub: Any, *, full: bool = True) -> None:
    """Add ``doctor`` and ``prune`` to the subparsers ``sub`` (``full=False``: their
    names and help only)."""
    fmt = Formatter
    if not full:
        for name, help_ in (("doctor", _DOCTOR_HELP), ("prune", _PRUNE_HELP)):
            sub.add_parser(name, help=help_, formatter_class=fmt)
        return
    d = sub.add_parser("doctor", help=_DOCTOR_HELP,
                       description=__doc__.split("\n\n")[0], epilog=_DOCTOR_EPILOG,
                       formatter_class=fmt)
    _common(d)
    d.set_defaults(func=run_doctor)
    p = sub.add_parser("prune", help=_PRUNE_HELP,
                       epilog=_DOCTOR_EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    p.set_defaults(func=run_prune)
