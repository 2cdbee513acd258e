"""``cgbpf demo``: a tour of cgroup bpf_link on the real kernel (or the model), in a
scratch subtree that is removed at the end (Ctrl-C included).  Every claim it prints is
measured: counters from loopback traffic (on the model, a model process's, the programs
run by its VM), queries, link info."""

from __future__ import annotations

import errno
import os
import signal
import struct
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TypeVar

from .. import asm
from .._scratch import Scratch
from .._traffic import in_cgroup, send_from
from ..cgroup import Cgroup
from ..errors import BpfError
from ..kernel import Kernel, model, probe
from ..link import Link
from ..map import Map
from ..model import ModelKernel
from ..program import Program
from ..uapi import AttachMode, AttachType, MapType, ProgType

EGRESS = AttachType.CGROUP_INET_EGRESS
PACKETS = 5
T = TypeVar("T", Link, Program, Map)


class DemoFailed(Exception):
    """The kernel did not behave as the tour says it does."""


class Tour:
    """The demo's state: a counter map with two slots, two counting programs."""

    def __init__(self, k: Kernel, s: Scratch, out: Callable[[str], None]) -> None:
        self.k, self.s, self.out = k, s, out
        self.stack = ExitStack()
        self.map = self.own(Map.create(MapType.ARRAY, key_size=4, value_size=8,
                                       max_entries=2, name="demo_counts", kernel=k))
        self.main, self.alt = (
            self.own(Program.load(asm.counter_program(self.map, key=i), ProgType.CGROUP_SKB,
                                  expected_attach_type=EGRESS, name=name, kernel=k))
            for i, name in enumerate(("count_main", "count_alt")))

    def own(self, obj: T) -> T:
        """Close ``obj`` when the tour ends, however it ends."""
        return self.stack.enter_context(obj)

    def traffic(self, cg: Cgroup, want: tuple[int, int]) -> None:
        """How often each program runs for PACKETS datagrams sent from inside ``cg``,
        checked against ``want`` (main, alt): the demo shows, then verifies.  Real
        traffic and the counters; on the model its VM runs the programs for a model
        process's datagrams."""
        for i in range(2):
            self.map.update(struct.pack("<I", i), bytes(8))
        got = send_from(cg.path, PACKETS, kernel=self.k)
        main, alt = (struct.unpack("<Q", self.map.lookup(struct.pack("<I", i)) or b"")[0]
                     for i in range(2))
        sender = "UDP datagrams" if self.k.name == "host" else "UDP datagrams of a model process"
        how = f"{PACKETS} {sender} from {self.rel(cg)} ({got} delivered)"
        self.out(f"    {how}: count_main ran {main}x, count_alt ran {alt}x")
        if (main, alt) != want:
            raise DemoFailed(f"expected count_main {want[0]}x and count_alt {want[1]}x")

    def rel(self, cg: Cgroup) -> str:
        return os.path.relpath(cg.path, self.s.base) if cg.path != self.s.base else "."

    def refused(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BpfError as e:
            self.out(f"    {what}: refused, {errno.errorcode.get(e.errno or 0)} ({e.hint})")
        else:
            raise DemoFailed(f"the kernel accepted: {what}")


def tour(k: Kernel, s: Scratch, out: Callable[[str], None]) -> None:
    t = Tour(k, s, out)
    with t.stack:
        _run(t)


def _run(t: Tour) -> None:
    out, s = t.out, t.s
    a, b, c = s.cgroup("a"), s.cgroup("a/b"), s.cgroup("a/b/c")
    out(f"scratch subtree {s.base}: a/b/c")

    out("\n1. Links at three levels run for traffic from the leaf")
    links = [t.own(cg.link(t.main)) for cg in (a, b, c)]
    for cg, link in zip((a, b, c), links, strict=True):
        out(f"    {t.rel(cg)}: link id {link.id} -> program {t.main.name} (id {t.main.id})")
    t.traffic(c, (3 * PACKETS, 0))

    out("\n2. Atomic update: the link on a/b swaps to count_alt, in place")
    links[1].update(t.alt, expected=t.main)
    t.traffic(c, (2 * PACKETS, PACKETS))
    t.refused("update expecting the old program again",
              lambda: links[1].update(t.main, expected=t.main))

    out("\n3. Effective order for a/b/c: the leaf's programs first, then its ancestors'")
    names = {t.main.id: t.main.name, t.alt.id: t.alt.name}
    eff = [names[i] for i in c.query(EGRESS, effective=True).ids]
    hook = b.query(EGRESS)
    out(f"    runs {' -> '.join(eff)}; hook a/b: mode {hook.mode.name}, "
        f"revision {hook.revision}")
    if eff != [t.main.name, t.alt.name, t.main.name]:
        raise DemoFailed("unexpected effective order")

    out("\n4. Owner rule: only the link's owners can detach it")
    t.refused("legacy PROG_DETACH of count_main from a/b/c", lambda: c.detach(t.main, EGRESS))

    out("\n5. Exclusive vs multi: links need a MULTI hook")
    t.refused("exclusive attach on a/b/c (has a link)",
              lambda: c.attach(t.alt, EGRESS, mode=AttachMode.EXCLUSIVE))
    c.attach(t.alt, EGRESS, mode=AttachMode.MULTI)
    out("    MULTI attach of count_alt beside the link: accepted")
    t.traffic(c, (2 * PACKETS, 2 * PACKETS))
    c.detach(t.alt, EGRESS)

    out("\n6. Closing a link fd detaches it, synchronously")
    links.pop().close()
    t.traffic(c, (PACKETS, PACKETS))

    pinned_survives(t, c)

    out("\n8. rmdir of a cgroup makes its links defunct")
    d = s.cgroup("a/b/c/d")
    link = t.own(d.link(t.main))
    d.remove()
    s.forget(d.path)
    start = time.monotonic()
    while not link.defunct:
        if time.monotonic() - start > 5:
            raise DemoFailed("the link was not auto-detached within 5 s of rmdir")
        time.sleep(0.001)
    out(f"    link {link.id} defunct {1000 * (time.monotonic() - start):.1f} ms after rmdir "
        f"(cgroup_id now {link.info().cgroup_id})")
    t.refused("update of the defunct link", lambda: link.update(t.alt))


def pinned_survives(t: Tour, c: Cgroup) -> None:
    """Another process creates and pins a link, then dies: the pin keeps the link."""
    out = t.out
    out("\n7. A pinned link survives the process that made it")
    pin = os.path.join(t.s.bpffs(), "demo_link")
    if isinstance(t.k, ModelKernel):
        other = t.k.process()
        with Cgroup.open(c.path, kernel=other) as cg, \
                Program.from_id(t.alt.id, kernel=other) as prog, cg.link(prog, EGRESS) as link:
            link.pin(pin)
        other.exit()
        out("    another model process linked and pinned count_alt, then exited")
    else:
        def child() -> int:
            link = c.link(t.alt)
            link.pin(pin)
            os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no cleanup
            return 0

        if in_cgroup(t.s.base, child) != -signal.SIGKILL:
            raise DemoFailed("the child that made the pinned link did not die by SIGKILL")
        out("    a child process linked and pinned count_alt, then was killed (SIGKILL)")
    t.traffic(c, (PACKETS, 2 * PACKETS))
    with Link.from_pin(pin, kernel=t.k) as link:
        out(f"    reopened {pin}: link id {link.id}, program id {link.info().prog_id}")
        link.unpin()
    out("    unpinned and closed: the last owner is gone")
    t.traffic(c, (PACKETS, PACKETS))


def missing(k: Kernel) -> str | None:
    """What stops the demo from running on the host, in words, or None."""
    if os.geteuid() != 0:
        return "root is needed (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF) to load and attach"
    if not probe.supported(k, probe.LINKS):
        return "this kernel has no cgroup bpf_link (Linux 5.7+)"
    return None


def say(line: str) -> None:
    """A line of the tour, flushed: a reader of a pipe sees each step as it happens."""
    print(line, flush=True)


def run(k: Kernel | str, out: Callable[[str], None] = say) -> int:
    """Run the tour on ``k``; if the host cannot (``k`` is then the reason, or ``k`` is
    the host and :func:`missing` finds a problem) say exactly why and run it on the model
    kernel instead.  Returns the exit status."""
    problem = k if isinstance(k, str) else missing(k) if k.name == "host" else None
    if problem or isinstance(k, str):
        out(f"cgbpf demo: the host kernel cannot run it: {problem}")
        out("cgbpf demo: running on the model kernel instead (pure Python, no privileges)\n")
        k = model()
    where = f"Linux {os.uname().release}" if k.name == "host" else "a model of Linux 6.18"
    out(f"cgbpf demo on the {k.name} kernel ({where}), cgroup2 at {k.cgroup_root}")
    # Ctrl-C raises where Python happens to be, which may be a __del__ (an fd object
    # closing), where exceptions are ignored: remember it, and raise it again at the
    # next line of the tour; a second one while cleaning up does not stop the cleanup
    hit: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        hit.append(signum)
        if len(hit) == 1:
            raise KeyboardInterrupt

    def step(line: str) -> None:
        if hit:
            raise KeyboardInterrupt
        out(line)

    try:
        previous = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread: Python's own handler stays
        previous = None
    try:
        with Scratch(k, "cgbpf-demo") as s:
            tour(k, s, step)
            if hit:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        out("\ninterrupted: the scratch subtree and mounts were removed")
        return 130
    except (DemoFailed, BpfError) as e:
        out(f"\nFAILED: {e} (everything the demo made was removed)")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    out("\ndone: every cgroup, link, pin and mount the demo made is gone")
    return 0
