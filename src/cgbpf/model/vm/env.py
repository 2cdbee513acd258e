"""What one program run sees besides its context (VM-SPEC §10): the current task, the
CPU, a clock and a seeded random source, the run context (``retval``), the cgroup storage
of the program being run, and the strictness options."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .helpers import call

if TYPE_CHECKING:
    from ..cgroupfs import Cgroup
    from ..objects import Map
    from .regions import Ptr, Region

#: The step budget (VM-SPEC §1.6): the verifier proves termination, the VM counts.
STEP_LIMIT = 1_000_000


class Task:
    """The task performing the syscall (``get_current_*``): ids, credentials, name, and
    its cgroup."""

    def __init__(self, pid: int, uid: int, gid: int, comm: bytes,
                 cgroup: Cgroup | None, tgid: int | None = None) -> None:
        self.pid, self.tgid = pid, pid if tgid is None else tgid
        self.uid, self.gid, self.comm, self.cgroup = uid, gid, comm[:15], cgroup


class Env:
    """One event's run state, shared by the programs of the effective array it runs."""

    def __init__(self, task: Task, attach_type: int, *, cpu: int = 0,
                 clock: Callable[[], int] = time.monotonic_ns, seed: int = 0,
                 retval: int = 0, uninit_stack: str = "error",
                 step_limit: int = STEP_LIMIT) -> None:
        self.task, self.attach_type, self.cpu, self.clock = task, attach_type, cpu, clock
        self.seed = seed
        #: run_ctx.retval: a C int (§5.2), read by get_retval, set by set_retval
        self.retval = retval
        self.uninit_stack, self.step_limit = uninit_stack, step_limit
        #: the context of the program being run, and its item's cgroup storage by map
        self.ctx: Region | None = None
        self.storage: dict[Map, Region] = {}
        self.trace_log: list[str] = []
        self.steps = 0

    @property
    def rng(self) -> random.Random:
        """The run's seeded random source, made when a program first asks (bpf_get_prandom_u32:
        a Random costs more than the rest of an Env)."""
        rng = self.__dict__.get("_rng")
        if rng is None:
            rng = self.__dict__["_rng"] = random.Random(self.seed)
        return rng

    def helper(self, helper_id: int, args: tuple[int | Ptr | object, ...]) -> int | Ptr:
        """Call helper ``helper_id`` with R1-R5 (:mod:`.helpers`)."""
        return call(self, helper_id, args)
