"""Characteristic cgroup-BPF requests against one kernel, one line each: ``name<TAB>result``.

    PYTHONPATH=src python tests/kernels/characterize.py host
    PYTHONPATH=src python tests/kernels/characterize.py model:6.1

The requests cover the rows of KERNEL-SEMANTICS.md §19 (what differs between kernels),
errno precedence (§4, §9) and the facts of §0.  They are sent as raw attrs (``cgbpf.uapi``
and ``kernel.bpf``), so they reach the kernel even where the library would refuse early.
A result is "ok" (plus normalised outputs: revisions, info_len, programs by their handle
names P0, P1, ... in load order) or the errno name of the call that failed.  Each request
works in its own cgroup of one scratch subtree, which is removed at the end.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from cgbpf import asm, uapi
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd

EG, IN = AT.CGROUP_INET_EGRESS, AT.CGROUP_INET_INGRESS
NONE, OVR, MULTI, REPLACE = 0, uapi.F_ALLOW_OVERRIDE, uapi.F_ALLOW_MULTI, uapi.F_REPLACE
BEFORE, AFTER, ID, PRE, LINK = uapi.F_BEFORE, uapi.F_AFTER, uapi.F_ID, uapi.F_PREORDER, uapi.F_LINK
BAD_FD = 9999  # never open here: the kernel answers EBADF
NO_ID = 0x7FFFFFF0  # an ID no object has
SENTINEL = 0xDEADBEEF
CODE = asm.assemble(asm.return_program(1))
NET = {"CAP_SYS_ADMIN", "CAP_BPF"}  # CAP_SYS_ADMIN without CAP_NET_ADMIN

Request = Callable[["Ctx"], "str | None"]
REQUESTS: list[tuple[str, Request]] = []


def request(fn: Request) -> Request:
    """Register ``fn`` as a request named after it (definition order = output order)."""
    REQUESTS.append((fn.__name__, fn))
    return fn


def outcome(fn: Callable[[], object]) -> str:
    """"ok" (with the outputs ``fn`` returns as a string) or the errno name it failed with."""
    try:
        out = fn()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, f"errno{e.errno}")
    return f"ok {out}" if isinstance(out, str) and out else "ok"


class Ctx:
    """One request's world: cgroups below ``<scratch>/<name>``, the fds it opened, and
    handle names for its programs."""

    def __init__(self, k: Kernel, scratch: Scratch, name: str) -> None:
        self.k, self.scratch, self.name = k, scratch, name
        self.fds: list[int] = []
        self.handles: dict[int, str] = {}  # prog id -> "P0", "P1", ...
        self.link_ids: list[int] = []
        self.cgroups: dict[str, int] = {}

    def close(self) -> None:
        for fd in reversed(self.fds):
            self.k.close(fd)

    def own(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def close_fd(self, fd: int) -> None:
        self.fds.remove(fd)
        self.k.close(fd)

    # --- cgroups and objects ---------------------------------------------------------

    def path(self, rel: str = "") -> str:
        return self.scratch.path(f"{self.name}/{rel}".rstrip("/"))

    def cg(self, rel: str = "") -> int:
        """The fd of cgroup ``rel`` below this request's cgroup (created on first use)."""
        if rel not in self.cgroups:
            self.cgroups[rel] = self.scratch.cgroup(f"{self.name}/{rel}".rstrip("/")).fd
        return self.cgroups[rel]

    def rmdir(self, rel: str = "") -> None:
        self.k.rmdir(self.path(rel))
        self.scratch.forget(self.path(rel))

    def prog(self, at: int = EG) -> int:
        """Load a program for attach type ``at`` (its prog type, expected_attach_type
        ``at``); it is named P<n> in outputs."""
        code = ctypes.create_string_buffer(CODE, len(CODE))
        lic = ctypes.create_string_buffer(b"GPL")
        fd = self.own(self.k.bpf(Cmd.PROG_LOAD, uapi.ProgLoadAttr(
            prog_type=uapi.CGROUP_PROG_TYPE[AT(at)], insn_cnt=len(CODE) // 8,
            insns=ctypes.addressof(code), license=ctypes.addressof(lic),
            expected_attach_type=at)))
        self.handles[self.info(fd, uapi.ProgInfo)[0].id] = f"P{len(self.handles)}"
        return fd

    def progs(self, n: int, at: int = EG) -> list[int]:
        return [self.prog(at) for _ in range(n)]

    def name_of(self, prog_id: int) -> str:
        return self.handles.get(prog_id, "?")

    # --- commands --------------------------------------------------------------------

    def attach(self, cg: int, prog: int, flags: int = 0, at: int = EG, *, replace: int = 0,
               relative: int = 0, revision: int = 0, k: Kernel | None = None) -> None:
        (k or self.k).bpf(Cmd.PROG_ATTACH, uapi.ProgAttachAttr(
            target_fd=cg, attach_bpf_fd=prog, attach_type=at, attach_flags=flags,
            replace_bpf_fd=replace, relative_fd=relative, expected_revision=revision))

    def detach(self, cg: int, prog: int, at: int = EG, *, flags: int = 0,
               revision: int = 0, k: Kernel | None = None) -> None:
        (k or self.k).bpf(Cmd.PROG_DETACH, uapi.ProgAttachAttr(
            target_fd=cg, attach_bpf_fd=prog, attach_type=at, attach_flags=flags,
            expected_revision=revision))

    def link(self, prog: int, cg: int, flags: int = 0, at: int = EG, *, relative: int = 0,
             revision: int = 0, k: Kernel | None = None) -> int:
        fd = (k or self.k).bpf(Cmd.LINK_CREATE, uapi.LinkCreateAttr(
            prog_fd=prog, target_fd=cg, attach_type=at, flags=flags, relative_fd=relative,
            expected_revision=revision))
        if k is None:
            self.own(fd)
            self.link_ids.append(self.info(fd)[0].id)
        return fd

    def update(self, link: int, new: int, *, old: int = 0) -> None:
        self.k.bpf(Cmd.LINK_UPDATE, uapi.LinkUpdateAttr(
            link_fd=link, new_prog_fd=new, flags=REPLACE if old else 0, old_prog_fd=old))

    def link_detach(self, link: int) -> None:
        self.k.bpf(Cmd.LINK_DETACH, uapi.LinkDetachAttr(link_fd=link))

    def info(self, fd: int, layout: type[uapi.Layout] = uapi.LinkInfo,
             size: int | None = None) -> tuple[Any, int]:
        """GET_INFO_BY_FD into a zeroed buffer of ``size`` bytes: (struct, info_len out)."""
        n = ctypes.sizeof(layout) if size is None else size
        raw = ctypes.create_string_buffer(max(n, ctypes.sizeof(layout)))
        attr = uapi.InfoAttr(bpf_fd=fd, info_len=n, info=ctypes.addressof(raw))
        self.k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
        return layout.from_buffer_copy(raw.raw), int(attr.info_len)

    def query(self, cg: int, at: int = EG, *, effective: bool = False, flags: bool = False,
              link_ids: bool = False, k: Kernel | None = None) -> Query:
        return Query(k or self.k, cg, at, effective=effective, flags=flags, link_ids=link_ids)

    def order(self, cg: int, *, effective: bool = False) -> str:
        """The programs of a hook (or its effective array) as handle names."""
        return ",".join(self.name_of(i) for i in self.query(cg, effective=effective).ids)

    def revision(self, cg: int) -> int:
        return self.query(cg).revision

    def as_process(self, caps: Iterable[str], fn: Callable[[Kernel], object]) -> None:
        """``fn(k)`` in a child process that shares this one's fds and has only ``caps``
        (the kernel's ``run_restricted``).  Raises the child's OSError."""
        self.k.run_restricted(set(caps), fn)


class Query:
    """PROG_QUERY with room for 64 entries: outputs, IDs, and whether link_ids was touched."""

    def __init__(self, k: Kernel, cg: int, at: int, *, effective: bool, flags: bool,
                 link_ids: bool) -> None:
        ids, flg, lnk = ((ctypes.c_uint32 * 64)(*[SENTINEL] * 64) for _ in range(3))
        attr = uapi.QueryAttr(
            target_fd=cg, attach_type=at, query_flags=uapi.F_QUERY_EFFECTIVE if effective
            else 0, prog_ids=ctypes.addressof(ids), prog_cnt=64,
            prog_attach_flags=ctypes.addressof(flg) if flags else 0,
            link_ids=ctypes.addressof(lnk) if link_ids else 0)
        k.bpf(Cmd.PROG_QUERY, attr)
        self.attach_flags, self.revision = int(attr.attach_flags), int(attr.revision)
        self.ids = list(ids)[: attr.prog_cnt]
        self.flags = list(flg)[: attr.prog_cnt]
        self.link_ids_untouched = all(v == SENTINEL for v in lnk)


def _poll(cond: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Wait for asynchronous kernel work (§11, §12); every poll is a system call."""
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


# === §19: what differs between kernels ======================================================


@request
def unix_hook_load(c: Ctx) -> None:
    c.prog(AT.CGROUP_UNIX_CONNECT)


@request
def unix_hook_link(c: Ctx) -> None:
    c.link(c.prog(AT.CGROUP_UNIX_SENDMSG), c.cg(), at=AT.CGROUP_UNIX_SENDMSG)


@request
def preorder_attach_multi(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI | PRE)


@request
def preorder_attach_none(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), PRE)


@request
def preorder_override_over_none(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), NONE)
    c.attach(c.cg(), c.prog(), OVR | PRE)


@request
def preorder_link(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), PRE)


@request
def preorder_effective_order(c: Ctx) -> str:
    """§6: A(MULTI)[P0, P1ᵖ] -> B(MULTI)[P2, P3ᵖ]: eff(B) = P1 P3 P2 P0."""
    p = c.progs(4)
    for rel, prog, flags in (("", p[0], 0), ("", p[1], PRE), ("b", p[2], 0), ("b", p[3], PRE)):
        c.attach(c.cg(rel), prog, MULTI | flags)
    return c.order(c.cg("b"), effective=True)


@request
def attach_before_unanchored(c: Ctx) -> str:
    p = c.progs(2)
    c.attach(c.cg(), p[0], MULTI)
    c.attach(c.cg(), p[1], MULTI | BEFORE)
    return c.order(c.cg())


@request
def attach_after_anchor(c: Ctx) -> str:
    p = c.progs(3)
    c.attach(c.cg(), p[0], MULTI)
    c.attach(c.cg(), p[1], MULTI)
    c.attach(c.cg(), p[2], MULTI | AFTER, relative=p[0])
    return c.order(c.cg())


@request
def attach_anchor_missing(c: Ctx) -> None:
    p = c.progs(2)
    c.attach(c.cg(), p[0], MULTI | BEFORE, relative=p[1])


@request
def attach_anchor_bad_fd(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI | BEFORE, relative=BAD_FD)


@request
def attach_anchor_bad_fd_nonempty(c: Ctx) -> None:
    p = c.progs(2)
    c.attach(c.cg(), p[0], MULTI)
    c.attach(c.cg(), p[1], MULTI | BEFORE, relative=BAD_FD)


@request
def attach_anchor_id_missing(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI | BEFORE | ID, relative=NO_ID)


@request
def attach_anchor_link_flag(c: Ctx) -> None:
    p = c.progs(2)
    lk = c.link(p[0], c.cg())
    c.attach(c.cg(), p[1], MULTI | BEFORE | LINK, relative=lk)


@request
def attach_none_mode_before(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), NONE | BEFORE)


@request
def attach_none_reattach_bogus_anchor(c: Ctx) -> None:
    """§0.16: a NONE re-attach replaces the entry without looking at the anchor."""
    c.attach(c.cg(), c.prog(), NONE)
    c.attach(c.cg(), c.prog(), NONE | AFTER, relative=BAD_FD)


@request
def link_before_link(c: Ctx) -> str:
    p = c.progs(2)
    lk = c.link(p[0], c.cg())
    c.link(p[1], c.cg(), BEFORE | LINK, relative=lk)
    return c.order(c.cg())


@request
def link_anchor_without_link_flag(c: Ctx) -> None:
    p = c.progs(2)
    c.link(p[1], c.cg(), BEFORE, relative=c.link(p[0], c.cg()))


@request
def link_anchor_id_missing(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), AFTER | LINK | ID, relative=NO_ID)


@request
def link_anchor_bad_fd(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), BEFORE | LINK, relative=BAD_FD)


@request
def link_anchor_is_prog_empty(c: Ctx) -> None:
    p = c.progs(2)
    c.link(p[1], c.cg(), BEFORE | LINK, relative=p[0])


@request
def link_anchor_is_prog(c: Ctx) -> None:
    p = c.progs(2)
    c.attach(c.cg(), p[0], MULTI)
    c.link(p[1], c.cg(), BEFORE | LINK, relative=p[0])


@request
def link_relative_fd_without_flags(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), relative=BAD_FD)


@request
def revision_fresh(c: Ctx) -> str:
    return f"revision={c.revision(c.cg())}"


@request
def revision_counts(c: Ctx) -> str:
    """attach, link create, link update, detach: +4 (§0.1); effective queries say 0."""
    p = c.progs(3)
    c.attach(c.cg(), p[0], MULTI)
    c.update(c.link(p[1], c.cg()), p[2])
    c.detach(c.cg(), p[0])
    return f"revision={c.revision(c.cg())} effective={c.query(c.cg(), effective=True).revision}"


@request
def expected_revision_current(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI, revision=1)


@request
def expected_revision_stale(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI, revision=5)


@request
def link_expected_revision_stale(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), revision=7)


@request
def detach_expected_revision_stale(c: Ctx) -> None:
    p = c.prog()
    c.attach(c.cg(), p, MULTI)
    c.detach(c.cg(), p, revision=9)


@request
def link_info_len_100(c: Ctx) -> str:
    return f"info_len={c.info(c.link(c.prog(), c.cg()), size=100)[1]}"


@request
def link_info_len_8(c: Ctx) -> str:
    return f"info_len={c.info(c.link(c.prog(), c.cg()), size=8)[1]}"


# === errno precedence (§4, §9): mixed cases ================================================


@request
def prec_attach_stale_vs_bad_anchor(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), MULTI | BEFORE, relative=BAD_FD, revision=9)


@request
def prec_attach_bad_target_vs_missing_anchor(c: Ctx) -> None:
    p = c.progs(2)
    c.attach(BAD_FD, p[0], MULTI | BEFORE, relative=p[1])


@request
def prec_attach_stale_vs_mode(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), NONE)
    c.attach(c.cg(), c.prog(), MULTI, revision=9)


@request
def prec_link_bad_target_vs_preorder(c: Ctx) -> None:
    c.link(c.prog(), BAD_FD, PRE)


@request
def prec_link_stale_vs_mode(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), NONE)
    c.link(c.prog(), c.cg(), revision=9)


@request
def prec_attach_replace_bad_fd_vs_flags(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(), OVR | MULTI | REPLACE, replace=BAD_FD)


@request
def prec_attach_wrong_type_vs_bad_target(c: Ctx) -> None:
    c.attach(BAD_FD, c.prog(AT.CGROUP_INET4_CONNECT), MULTI)


@request
def prec_link_flags_vs_bad_target(c: Ctx) -> None:
    c.link(c.prog(), BAD_FD, MULTI)


@request
def prec_attach_bad_prog_vs_removed_target(c: Ctx) -> None:
    cg = c.cg()
    c.rmdir()
    c.attach(cg, BAD_FD, MULTI)


@request
def prec_e2big_vs_duplicate(c: Ctx) -> None:
    """§0.7: with 64 entries even re-attaching an attached program gives E2BIG."""
    p = c.progs(64)
    for prog in p:
        c.attach(c.cg(), prog, MULTI)
    c.attach(c.cg(), p[0], MULTI)


# === capabilities (§0.3, §0.19, §15) =======================================================


@request
def no_net_admin_skb_attach(c: Ctx) -> None:
    cg, p = c.cg(), c.prog()
    c.as_process(NET, lambda k: c.attach(cg, p, MULTI, k=k))


@request
def no_net_admin_skb_link(c: Ctx) -> None:
    cg, p = c.cg(), c.prog()
    c.as_process(NET, lambda k: c.link(p, cg, k=k))


@request
def no_net_admin_query(c: Ctx) -> None:
    cg = c.cg()
    c.as_process(NET, lambda k: c.query(cg, k=k))


@request
def no_caps_sock_addr_attach(c: Ctx) -> None:
    cg, p = c.cg(), c.prog(AT.CGROUP_INET4_CONNECT)
    c.as_process((), lambda k: c.attach(cg, p, MULTI, AT.CGROUP_INET4_CONNECT, k=k))


@request
def no_caps_detach_none_mode(c: Ctx) -> str:
    cg = c.cg()
    c.attach(cg, c.prog(), NONE)
    c.as_process((), lambda k: c.detach(cg, 0, k=k))
    return f"left={c.order(cg)}"


@request
def no_caps_query(c: Ctx) -> None:
    cg = c.cg()
    c.as_process((), lambda k: c.query(cg, k=k))


# === §0 facts and other version-dependent behaviour ========================================


@request
def none_detach_ignores_prog_fd(c: Ctx) -> str:
    p = c.progs(2)
    c.attach(c.cg(), p[0], NONE)
    c.detach(c.cg(), p[1])
    return f"left={c.order(c.cg())}"


@request
def link_then_none_attach(c: Ctx) -> None:
    p = c.progs(2)
    c.link(p[0], c.cg())
    c.attach(c.cg(), p[1], NONE)


@request
def override_then_link(c: Ctx) -> None:
    p = c.progs(2)
    c.attach(c.cg(), p[0], OVR)
    c.link(p[1], c.cg())


@request
def legacy_detach_of_link_prog(c: Ctx) -> None:
    p = c.prog()
    c.link(p, c.cg())
    c.detach(c.cg(), p)


@request
def legacy_detach_fd0_multi(c: Ctx) -> None:
    c.link(c.prog(), c.cg())
    c.detach(c.cg(), 0)


@request
def replace_link_entry(c: Ctx) -> None:
    p = c.progs(2)
    c.link(p[0], c.cg())
    c.attach(c.cg(), p[1], MULTI | REPLACE, replace=p[0])


@request
def replace_self(c: Ctx) -> None:
    p = c.prog()
    c.attach(c.cg(), p, MULTI)
    c.attach(c.cg(), p, MULTI | REPLACE, replace=p)


@request
def same_prog_three_times(c: Ctx) -> str:
    p = c.prog()
    c.link(p, c.cg())
    c.link(p, c.cg())
    c.attach(c.cg(), p, MULTI)
    return c.order(c.cg())


@request
def legacy_duplicate(c: Ctx) -> None:
    p = c.prog()
    c.attach(c.cg(), p, MULTI)
    c.attach(c.cg(), p, MULTI)


@request
def effective_order_multi(c: Ctx) -> str:
    """§6: A(MULTI)[P0,P1] -> B(MULTI)[P2,P3] -> C(MULTI)[P4]: eff(C) = P4 P2 P3 P0 P1."""
    p = c.progs(5)
    for rel, prog in (("", p[0]), ("", p[1]), ("b", p[2]), ("b", p[3]), ("b/c", p[4])):
        c.attach(c.cg(rel), prog, MULTI)
    return c.order(c.cg("b/c"), effective=True)


@request
def effective_order_override(c: Ctx) -> str:
    """§6: A(MULTI)[P0,P1] -> B(OVERRIDE)[P2] -> C(NONE)[P3]: eff(C) = P3 P0 P1."""
    p = c.progs(4)
    for rel, prog, flags in (("", p[0], MULTI), ("", p[1], MULTI), ("b", p[2], OVR),
                             ("b/c", p[3], NONE)):
        c.attach(c.cg(rel), prog, flags)
    return f"{c.order(c.cg('b'), effective=True)} {c.order(c.cg('b/c'), effective=True)}"


@request
def late_none_ancestor(c: Ctx) -> str:
    """§0.9: a NONE parent attached after the child has programs does not apply to it."""
    p = c.progs(2)
    c.attach(c.cg("b"), p[1], MULTI)
    c.attach(c.cg(), p[0], NONE)
    return f"{c.order(c.cg(), effective=True)} {c.order(c.cg('b'), effective=True)}"


@request
def close_link_detaches_now(c: Ctx) -> str:
    lk = c.link(c.prog(), c.cg())
    c.close_fd(lk)
    return f"left={c.order(c.cg())}"


@request
def link_detach_defunct(c: Ctx) -> str:
    """§0.12 after LINK_DETACH: cgroup_id 0, update ENOLINK, detach again 0."""
    p = c.progs(2)
    lk = c.link(p[0], c.cg())
    c.link_detach(lk)
    info = c.info(lk)[0]
    return (f"cgroup_id={info.cgroup_id} prog={c.name_of(info.prog_id)} "
            f"update={outcome(lambda: c.update(lk, p[1]))} "
            f"again={outcome(lambda: c.link_detach(lk))} left={c.order(c.cg())}")


@request
def rmdir_auto_detach(c: Ctx) -> str:
    """§0.11/§12: rmdir with a link is allowed; the link becomes defunct later."""
    p = c.progs(2)
    cg = c.cg()
    lk = c.link(p[0], cg)
    c.rmdir()
    query = outcome(lambda: c.query(cg))
    defunct = _poll(lambda: c.info(lk)[0].cgroup_id == 0)
    return (f"query={query} defunct={defunct} update={outcome(lambda: c.update(lk, p[1]))} "
            f"detach={outcome(lambda: c.link_detach(lk))}")


@request
def update_ignores_eat(c: Ctx) -> str:
    """§0.13: an INET4_CONNECT link takes a program loaded for INET6_BIND."""
    lk = c.link(c.prog(AT.CGROUP_INET4_CONNECT), c.cg(), at=AT.CGROUP_INET4_CONNECT)
    c.update(lk, c.prog(AT.CGROUP_INET6_BIND))
    info = c.info(lk)[0]
    return f"prog={c.name_of(info.prog_id)} attach_type={info.attach_type}"


@request
def update_expected_mismatch(c: Ctx) -> None:
    p = c.progs(3)
    c.update(c.link(p[0], c.cg()), p[1], old=p[2])


@request
def link_info_fields(c: Ctx) -> str:
    info = c.info(c.link(c.prog(), c.cg()))[0]
    same = info.cgroup_id == c.k.cgroup_id(c.path())
    return (f"type={info.type} prog={c.name_of(info.prog_id)} attach_type={info.attach_type}"
            f" cgroup_id={'inode' if same else info.cgroup_id}")


@request
def link_fdinfo(c: Ctx) -> str:
    lk = c.link(c.prog(), c.cg())
    info = c.k.fdinfo(lk)
    shown = {"link_type", "attach_type"}
    keys = [k for k in info if k not in ("pos", "flags", "mnt_id", "ino")]
    return ",".join(f"{k}={info[k]}" if k in shown else k for k in keys)


@request
def info_bad_fd(c: Ctx) -> None:
    c.info(BAD_FD)


@request
def link_fd_by_id_rdonly(c: Ctx) -> None:
    c.link(c.prog(), c.cg())
    c.k.bpf(Cmd.LINK_GET_FD_BY_ID, uapi.GetIdAttr(start_id=c.link_ids[0],
                                                  open_flags=uapi.F_RDONLY))


@request
def failed_link_create_uses_id(c: Ctx) -> str:
    """§0.18 (other processes use IDs too, so only "at least one skipped" is stable)."""
    p = c.progs(3)
    c.link(p[0], c.cg())
    c.attach(c.cg("b"), p[1], NONE)
    failed = outcome(lambda: c.link(p[1], c.cg("b")))
    c.link(p[2], c.cg())
    return f"{failed} skipped={c.link_ids[1] - c.link_ids[0] >= 2}"


@request
def query_attach_flags(c: Ctx) -> str:
    """§0.14: every entry reports the hook's flags word."""
    p = c.progs(2)
    c.attach(c.cg(), p[0], MULTI)
    c.link(p[1], c.cg())
    q = c.query(c.cg(), flags=True)
    return f"attach_flags={q.attach_flags} flags={','.join(map(str, q.flags))}"


@request
def query_link_ids_untouched(c: Ctx) -> str:
    c.link(c.prog(), c.cg())
    return f"untouched={c.query(c.cg(), link_ids=True).link_ids_untouched}"


@request
def query_effective_attach_flags(c: Ctx) -> str:
    c.attach(c.cg(), c.prog(), MULTI)
    return f"attach_flags={c.query(c.cg(), effective=True).attach_flags}"


@request
def detach_with_attach_flags(c: Ctx) -> None:
    p = c.prog()
    c.attach(c.cg(), p, MULTI)
    c.detach(c.cg(), p, flags=MULTI)


@request
def detach_with_replace_fd(c: Ctx) -> None:
    p = c.prog()
    c.attach(c.cg(), p, MULTI)
    c.k.bpf(Cmd.PROG_DETACH, uapi.ProgAttachAttr(target_fd=c.cg(), attach_bpf_fd=p,
                                                 attach_type=EG, replace_bpf_fd=p))


@request
def skb_link_to_sock_create(c: Ctx) -> None:
    c.link(c.prog(), c.cg(), at=AT.CGROUP_INET_SOCK_CREATE)


@request
def skb_egress_prog_to_ingress(c: Ctx) -> None:
    c.attach(c.cg(), c.prog(EG), MULTI, IN)


@request
def target_not_cgroup(c: Ctx) -> None:
    fd = c.own(c.k.open_dir("/tmp"))
    c.attach(fd, c.prog(), MULTI)


@request
def target_removed_cgroup(c: Ctx) -> None:
    cg = c.cg()
    c.rmdir()
    c.attach(cg, c.prog(), MULTI)


@request
def target_o_path(c: Ctx) -> None:
    c.cg()
    c.link(c.prog(), c.own(c.k.open_dir(c.path(), path_only=True)))


@request
def prog_tag(c: Ctx) -> str:
    """The tag of a program that references a map (its fd is zeroed for the tag): SHA-1
    before 6.18, SHA-256 from 6.18 (feature tag_sha256)."""
    from cgbpf import Map, MapType, Program, ProgType

    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1,
                    kernel=c.k) as m, Program.load(
            asm.counter_program(m), ProgType.CGROUP_SKB, expected_attach_type=EG,
            kernel=c.k) as p:
        return f"tag={p.info().tag}"


@request
def library_probes(c: Ctx) -> str:
    """What ``cgbpf.kernel.probe`` finds on this kernel: every feature of its table, as
    present (+), absent (-) or could not tell (?)."""
    return ",".join({True: "+", False: "-", None: "?"}[probe.check(c.k, key)] + key
                    for key in probe.FEATURES)


# ==========================================================================================


def characterize(k: Kernel, prefix: str = "cgbpf-char") -> list[tuple[str, str]]:
    """Run every request on ``k``, each in its own cgroup; return (name, result) pairs."""
    out = []
    with Scratch(k, prefix) as scratch:
        for name, fn in REQUESTS:
            ctx = Ctx(k, scratch, name)
            try:
                out.append((name, outcome(lambda: fn(ctx))))  # noqa: B023 - called now
            finally:
                ctx.close()
    return out


def kernel_of(spec: str) -> Kernel:
    """``host`` or ``model:<version>``."""
    import cgbpf

    if spec == "host":
        return cgbpf.host()
    if spec.startswith("model:"):
        return cgbpf.model(spec.removeprefix("model:"))
    raise SystemExit(f"usage: {sys.argv[0]} host|model:<version>")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(f"usage: {argv[0]} host|model:<version>")
    for name, result in characterize(kernel_of(argv[1])):
        print(f"{name}\t{result}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
