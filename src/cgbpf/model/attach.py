"""Cgroup attachment: PROG_ATTACH, PROG_DETACH, PROG_QUERY, LINK_CREATE, LINK_UPDATE and
LINK_DETACH, written as docs/kernel.md §4, §5, §7-§11 state them.

Each command is one function whose numbered comments are the rows of its errno table, in
the table's order: the first failing check decides the errno.  Differences between kernel
versions are ``profile.has(...)`` branches (§16, §19).  State changes go through
:meth:`Cgroup.commit` (revision + 1, effective arrays recomputed, §3/§6).
"""

from __future__ import annotations

import errno
import functools
import struct
from typing import Any

from .. import uapi
from ..uapi import Cmd
from . import memory
from .cgroupfs import Cgroup, Entry, Hook
from .memory import Attr, fail
from .objects import Link, Prog
from .process import ObjFile, Process
from .profiles import Profile
from .vm import storage

MULTI, OVERRIDE = uapi.F_ALLOW_MULTI, uapi.F_ALLOW_OVERRIDE
REPLACE, PREORDER = uapi.F_REPLACE, uapi.F_PREORDER
BEFORE, AFTER, ID, LINK = uapi.F_BEFORE, uapi.F_AFTER, uapi.F_ID, uapi.F_LINK
ANCHOR = BEFORE | AFTER | ID | LINK

#: :meth:`Profile.attr_end`, worked out once per (profile, command): profiles are frozen.
attr_end = functools.cache(Profile.attr_end)
#: ``uapi.CGROUP_PROG_TYPE`` keyed by plain ints: no enum conversion per call.
PROG_TYPE: dict[int, uapi.ProgType] = {int(t): p for t, p in uapi.CGROUP_PROG_TYPE.items()}


def prog_type_for(proc: Process, attach_type: int) -> int:
    """§2.1: the program type an attach type takes; EINVAL if not a cgroup attach type on
    this kernel."""
    if not proc.machine.profile.knows_attach_type(attach_type):
        raise fail(errno.EINVAL)
    return PROG_TYPE[attach_type]


def check_attach_type(proc: Process, prog: Prog, attach_type: int) -> None:
    """§2.2 (``bpf_prog_attach_check_attach_type``): EINVAL on a mismatch; EPERM for a
    CGROUP_SKB program when the caller lacks CAP_NET_ADMIN (PROG_ATTACH turns that into
    EINVAL, LINK_CREATE does not, §0 fact 19)."""
    profile = proc.machine.profile
    known = profile.knows_attach_type(attach_type)
    ptype = PROG_TYPE[attach_type] if known else None
    if prog.type == uapi.ProgType.CGROUP_SKB:
        if not proc.net_capable():
            raise fail(errno.EPERM)
        # 6.9: LINK_CREATE checks the hook's type for skb programs too (§2.2 history)
        type_ok = ptype == prog.type or not profile.has("skb_link_type_check")
    else:
        type_ok = prog.type in uapi.EAT_ENFORCED or ptype == prog.type
    if not (type_ok and fits(prog, attach_type)):
        raise fail(errno.EINVAL)


def fits(prog: Prog, attach_type: int) -> bool:
    """Whether ``prog``'s expected attach type allows ``attach_type`` (the part of §2.2 that
    LINK_UPDATE checks with the CVE-2025-40123 fix): for the types that enforce it, and
    for an egress-enforced CGROUP_SKB program."""
    if prog.type in uapi.EAT_ENFORCED or prog.enforce_eat:
        return attach_type == prog.expected_attach_type
    return True


def require_net_admin_before_5_8(proc: Process) -> None:
    """§15 history: on 5.7 PROG_ATTACH/DETACH/QUERY (and LINK_CREATE) need CAP_NET_ADMIN."""
    if not proc.machine.profile.has("cap_bpf") and not proc.capable("CAP_NET_ADMIN"):
        raise fail(errno.EPERM)


# --- the steps PROG_ATTACH and LINK_CREATE share (§4 steps 10-13, §5) -------------------


def admit(cgroup: Cgroup, attach_type: int, flags: int, expected_revision: int) -> Hook:
    """§4 steps 10-13 (also §9 step 8); returns the hook."""
    hook = cgroup.hook(attach_type)
    if expected_revision and expected_revision != hook.revision:  # 10
        raise fail(errno.ESTALE)
    if not hierarchy_allows(cgroup, attach_type):  # 11
        raise fail(errno.EPERM)
    if hook.entries and hook.mode != flags & (OVERRIDE | MULTI):  # 12
        raise fail(errno.EPERM)
    if len(hook.entries) >= uapi.MAX_PROGS:  # 13
        raise fail(errno.E2BIG)
    return hook


def hierarchy_allows(cgroup: Cgroup, attach_type: int) -> bool:
    """§4 "Hierarchy check": the first non-empty ancestor decides; MULTI allows, a single
    entry allows iff its mode is OVERRIDE; no such ancestor allows."""
    for ancestor in cgroup.ancestors():
        above = ancestor.hooks.get(attach_type)
        if above is None or not above.entries:
            continue
        if above.mode == MULTI:
            return True
        return above.mode == OVERRIDE
    return True


def position(proc: Process, hook: Hook, flags: int, relative: int, *, link: bool) -> int:
    """§5: where a new entry goes in the list (index for ``list.insert``).  The anchor is
    resolved (EBADF, EINVAL, ENOENT for an unknown ID) even when the list is empty."""
    before, after = bool(flags & BEFORE), bool(flags & AFTER)
    if relative or flags & (ID | LINK):  # anchored
        if before == after:
            raise fail(errno.EINVAL)
        if bool(flags & LINK) != link:
            raise fail(errno.EINVAL)
        anchor = resolve_anchor(proc, flags, relative)
        preorder = bool(flags & PREORDER)
        for i, entry in enumerate(hook.entries):
            held = entry.link if link else entry.prog if entry.link is None else None
            if held is anchor:
                if entry.preorder != preorder:
                    raise fail(errno.EINVAL)
                return i if before else i + 1
        raise fail(errno.ENOENT)
    if before and after and hook.entries:
        raise fail(errno.EINVAL)
    return 0 if before else len(hook.entries)


def resolve_anchor(proc: Process, flags: int, relative: int) -> Link | Prog:
    """§5 anchor table: the anchor object (errors as the table says).  A prog anchor
    matches only legacy entries, a link anchor only that link's entry."""
    m = proc.machine
    anchor: Link | Prog | None
    if flags & LINK:
        anchor = m.link_by_id(relative) if flags & ID else proc.obj(relative, Link)
    else:
        anchor = m.progs.get(relative) if flags & ID else proc.prog(relative)
    if anchor is None:
        raise fail(errno.ENOENT)
    return anchor


# --- §4 BPF_PROG_ATTACH ----------------------------------------------------------------


def attach_flag_mask(proc: Process) -> int:
    profile = proc.machine.profile
    return (OVERRIDE | MULTI | REPLACE | (PREORDER if profile.has("preorder_attach") else 0)
            | (ANCHOR if profile.has("mprog_cgroup") else 0))


def _legacy_steps_1_2(proc: Process, attr: Attr, cmd: Cmd) -> tuple[Profile, Any, int]:
    """Steps 1-2 shared by PROG_ATTACH (§4) and PROG_DETACH (§7): the (5.7) capability,
    the trailing bytes, the attach type.  Returns the profile, the attr, the prog type."""
    profile = proc.machine.profile
    a = attr.view(uapi.ProgAttachAttr)
    require_net_admin_before_5_8(proc)
    attr.check_tail(attr_end(profile, cmd))  # 1
    return profile, a, prog_type_for(proc, a.attach_type)  # 2


def prog_attach(proc: Process, attr: Attr) -> int:
    profile, a, ptype = _legacy_steps_1_2(proc, attr, Cmd.PROG_ATTACH)  # 1-2
    flags = a.attach_flags
    if flags & ~attach_flag_mask(proc):  # 3
        raise fail(errno.EINVAL)
    if not profile.has("mprog_cgroup") and (a.relative_fd or a.expected_revision):
        raise fail(errno.EINVAL)  # 3, 6.6-6.16: mprog fields rejected for cgroups
    prog = proc.prog(a.attach_bpf_fd, ptype)  # 4
    try:  # 5
        check_attach_type(proc, prog, a.attach_type)
    except OSError:
        raise fail(errno.EINVAL) from None
    cgroup = proc.cgroup(a.target_fd)  # 6
    replace = proc.prog(a.replace_bpf_fd, ptype) if flags & MULTI and flags & REPLACE else None  # 7
    if (flags & OVERRIDE and flags & MULTI) or (flags & REPLACE and not flags & MULTI):  # 8
        raise fail(errno.EINVAL)
    if flags & REPLACE and flags & (BEFORE | AFTER):  # 9
        raise fail(errno.EINVAL)
    hook = admit(cgroup, a.attach_type, flags, a.expected_revision)  # 10-13
    target: Entry | None = None
    if flags & MULTI:
        held = hook.legacy_entry(prog)
        self_ok = profile.has("replace_self")  # 5.7: replacing a prog with itself: EINVAL
        if held is not None and not (self_ok and prog is replace):  # 14
            raise fail(errno.EINVAL)
        if replace is not None:  # 15
            target = hook.legacy_entry(replace)
            if target is None:
                raise fail(errno.ENOENT)
    elif hook.entries:
        target = hook.entries[0]  # 17: NONE/OVERRIDE replace in place; anchors not examined
    if target is None:
        index = position(proc, hook, flags, a.relative_fd, link=False)  # 16
        target = Entry()
        hook.entries.insert(index, target)
    old, target.prog, target.preorder = target.prog, prog.get(), bool(flags & PREORDER)  # 17
    target.storage = storage.link(prog, cgroup, a.attach_type)
    if old is not None:
        old.put()
    hook.mode = flags & (OVERRIDE | MULTI)
    cgroup.commit(a.attach_type)
    return 0


# --- §7 BPF_PROG_DETACH ----------------------------------------------------------------


def prog_detach(proc: Process, attr: Attr) -> int:
    profile, a, ptype = _legacy_steps_1_2(proc, attr, Cmd.PROG_DETACH)  # 1-2
    if profile.has("mprog_uapi") and (a.attach_flags or a.relative_fd or (
            a.expected_revision and not profile.has("mprog_cgroup"))):  # 3
        raise fail(errno.EINVAL)
    cgroup = proc.cgroup(a.target_fd)  # 4
    try:  # 5: leniently
        prog: Prog | None = proc.prog(a.attach_bpf_fd, ptype)
    except OSError:
        prog = None
    hook = cgroup.hook(a.attach_type)
    if a.expected_revision and a.expected_revision != hook.revision:  # 6
        raise fail(errno.ESTALE)
    if hook.mode != MULTI:  # 7: the single entry, whatever the prog argument
        entry = hook.entries[0] if hook.entries else None
    elif prog is None:  # 8
        raise fail(errno.EINVAL)
    else:
        entry = hook.legacy_entry(prog)
    if entry is None:
        raise fail(errno.ENOENT)
    if (entry.current is not prog and profile.has("detach_other_net_admin")
            and not proc.net_capable()):  # 8': a backport (probe.DETACH_OTHER_NET_ADMIN)
        raise fail(errno.EPERM)
    hook.entries.remove(entry)  # 9
    entry.current.put()
    cgroup.commit(a.attach_type)
    return 0


# --- §8 BPF_PROG_QUERY -----------------------------------------------------------------


def prog_query(proc: Process, attr: Attr) -> int:
    profile = proc.machine.profile
    q = attr.view(uapi.QueryAttr)
    if not proc.net_capable():  # 1
        raise fail(errno.EPERM)
    attr.check_tail(attr_end(profile, Cmd.PROG_QUERY))  # 2
    if q.query_flags & ~uapi.F_QUERY_EFFECTIVE:  # 3
        raise fail(errno.EINVAL)
    prog_type_for(proc, q.attach_type)  # 4
    cgroup = proc.cgroup(q.target_fd)  # 5
    effective = bool(q.query_flags & uapi.F_QUERY_EFFECTIVE)
    if effective and q.prog_attach_flags:  # 6
        raise fail(errno.EINVAL)
    if (q.attach_type == uapi.AttachType.LSM_CGROUP and not effective and q.prog_cnt
            and q.prog_ids and not q.prog_attach_flags):
        raise fail(errno.EINVAL)
    hook = cgroup.hook(q.attach_type)
    ids = [e.current.id for e in (hook.effective if effective else hook.entries)]
    # Outputs (written on success and on ENOSPC); before 6.0 an effective query reported
    # the mode too.
    zero_flags = effective and profile.has("prog_attach_flags_query")
    attr.put(uapi.QueryAttr, "attach_flags", 0 if zero_flags else hook.mode)
    attr.put(uapi.QueryAttr, "prog_cnt", len(ids))
    if profile.has("mprog_cgroup"):
        attr.put(uapi.QueryAttr, "revision", 0 if effective else hook.revision)
    if q.prog_cnt == 0 or not q.prog_ids or not ids:
        return 0
    k = min(q.prog_cnt, len(ids))
    memory.write(q.prog_ids, struct.pack(f"<{k}I", *ids[:k]))
    if not effective and q.prog_attach_flags:
        memory.write(q.prog_attach_flags, struct.pack(f"<{k}I", *[hook.mode] * k))
    if q.prog_cnt < len(ids):
        raise fail(errno.ENOSPC)
    return 0


# --- §9 BPF_LINK_CREATE ----------------------------------------------------------------


def link_flag_mask(proc: Process) -> int:
    profile = proc.machine.profile
    return ((PREORDER if profile.has("preorder_link") else 0)
            | (ANCHOR if profile.has("mprog_cgroup") else 0))


def link_create(proc: Process, attr: Attr) -> int:
    m = proc.machine
    a = attr.view(uapi.LinkCreateAttr)
    require_net_admin_before_5_8(proc)
    attr.check_tail(attr_end(m.profile, Cmd.LINK_CREATE))  # 1
    prog = proc.prog(a.prog_fd)  # 2
    check_attach_type(proc, prog, a.attach_type)  # 3
    if prog.type not in uapi.CGROUP_PROG_TYPE.values():  # 4
        raise fail(errno.EINVAL)
    flags = a.flags
    if flags & ~link_flag_mask(proc):  # 5
        raise fail(errno.EINVAL)
    cgroup = proc.cgroup(a.target_fd)  # 6
    link = Link(m.links, m.defer, prog, a.attach_type).publish()  # 7: the ID is used up
    try:
        prog_type_for(proc, a.attach_type)  # (a pre-6.9 skb prog may name any type)
        relative, revision = ((a.relative_fd, a.expected_revision)
                              if m.profile.has("mprog_cgroup") else (0, 0))
        hook = admit(cgroup, a.attach_type, flags | MULTI, revision)  # 8: §4 steps 10-13
        index = position(proc, hook, flags, relative, link=True)  # 8: §4 step 16
    except OSError:
        m.links.free(link.id)
        raise
    prog.get()  # 9
    link.cgroup = cgroup
    hook.entries.insert(index, Entry(link=link, preorder=bool(flags & PREORDER),
                                     storage=storage.link(prog, cgroup, a.attach_type)))
    hook.mode = MULTI
    cgroup.commit(a.attach_type)
    return proc.install(ObjFile(link))


# --- §10 BPF_LINK_UPDATE ---------------------------------------------------------------


def link_update(proc: Process, attr: Attr) -> int:
    profile = proc.machine.profile
    a = attr.view(uapi.LinkUpdateAttr)
    attr.check_tail(attr_end(profile, Cmd.LINK_UPDATE))  # 1
    if a.flags & ~REPLACE:  # 2
        raise fail(errno.EINVAL)
    link = proc.obj(a.link_fd, Link)  # 3
    new = proc.prog(a.new_prog_fd)  # 4
    old = None
    if a.flags & REPLACE:  # 5
        old = proc.prog(a.old_prog_fd)
    elif a.old_prog_fd:
        raise fail(errno.EINVAL)
    cgroup = link.cgroup
    if cgroup is None:  # 6
        raise fail(errno.ENOLINK if profile.has("enolink_on_update") else errno.EINVAL)
    if old is not None and link.prog is not old:  # 7
        raise fail(errno.EPERM)
    if new.type != link.prog.type:  # 8
        raise fail(errno.EINVAL)
    if profile.has("update_eat_check") and not fits(new, link.attach_type):  # 8b
        raise fail(errno.EINVAL)
    old, link.prog = link.prog, new.get()  # 9: in place; position and preorder unchanged
    old.put()
    cgroup.commit(link.attach_type)
    return 0


# --- §11 BPF_LINK_DETACH ---------------------------------------------------------------


def link_detach(proc: Process, attr: Attr) -> int:
    attr.check_tail(attr_end(proc.machine.profile, Cmd.LINK_DETACH))
    link = proc.obj(attr.view(uapi.LinkDetachAttr).link_fd, Link)
    if link.cgroup is not None:  # a defunct link: 0, nothing changes
        link.cgroup.detach_link(link)
    return 0
