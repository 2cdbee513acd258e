"""Programs and checks shared by the tests: counting programs and real traffic; the
host/model helpers come from the plugin (cgbpf.testing.pytest_plugin)."""

from __future__ import annotations

import struct

from cgbpf import AttachType, Cgroup, Map, MapType, Program, ProgType, asm
from cgbpf.kernel import Kernel
from cgbpf.testing import send_from
from cgbpf.testing.pytest_plugin import CI, host_only, host_problem, need_host, requires

__all__ = ["CI", "EGRESS", "INGRESS", "OK", "OLDER_WORDING", "Counted", "Counters", "host_only",
           "host_problem", "load", "need_host", "requires", "said"]


EGRESS = AttachType.CGROUP_INET_EGRESS
INGRESS = AttachType.CGROUP_INET_INGRESS
OK = asm.return_program(1)

#: The verifier's words for the same refusal in older kernels (measured on Debian 6.1.192;
#: 6.12 says it as 6.18 does).  The model says it as 6.18 does.
OLDER_WORDING = {
    "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can be sleepable":
        "Only fentry/fexit/fmod_ret, lsm, and kprobe/uprobe programs can be sleepable",
    "At program exit the register R0 has smin=7 smax=7 should have been in [0, 3]":
        "At program exit the register R0 has value (0x7; 0x0) should have been in (0x0; 0x3)",
    # 6.1: a helper the program type lacks is "unknown" there
    "program of this type cannot use helper bpf_get_retval#186":
        "unknown func bpf_get_retval#186",
}


def said(kernel: Kernel, text: str, lines: list[str],
         wording: dict[str, str] | None = None) -> str:
    """The line of the verifier log ``lines`` that says ``text``, in 6.18's words or, on
    the host, in an older kernel's (:data:`OLDER_WORDING`, and ``wording``, a test's
    own); "" if none does."""
    older = {**OLDER_WORDING, **(wording or {})}.get(text, text) if kernel.name == "host" \
        else text
    return next((line for line in lines if line in (text, older)), "")


class Counted:
    """Programs ``progs`` that each count into a slot (``read``/``reset``: the slots)."""

    kernel: Kernel
    progs: list[Program]

    def read(self) -> list[int]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def check(self, cgroup_path: str, packets: int = 1) -> list[int]:
        """How often each program runs for ``packets`` datagrams sent from inside the
        cgroup: traffic (real, or the model's, run by its VM) and the counters, which
        must agree with the effective array."""
        with Cgroup.open(cgroup_path, kernel=self.kernel) as cg:
            eff = cg.query(EGRESS, effective=True).ids
        counted = [eff.count(p.id) * packets for p in self.progs]
        self.reset()
        assert send_from(cgroup_path, packets, kernel=self.kernel) == packets
        assert self.read() == counted, "the programs that ran are not the effective array"
        return counted


class Counters(Counted):
    """One ARRAY map with ``n`` u64 slots, and a program per slot that adds 1 to it."""

    def __init__(self, kernel: Kernel, n: int = 2, *, ret: int = 1,
                 attach_type: AttachType = EGRESS) -> None:
        self.kernel = kernel
        self.map = Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=n,
                              name="counters", kernel=kernel)
        self.progs = [
            Program.load(asm.counter_program(self.map, key=i, ret=ret), ProgType.CGROUP_SKB,
                         expected_attach_type=attach_type, name=f"count{i}", kernel=kernel)
            for i in range(n)
        ]

    def read(self) -> list[int]:
        return [struct.unpack("<Q", self.map.lookup(struct.pack("<I", i)) or b"")[0]
                for i in range(len(self.progs))]

    def reset(self) -> None:
        for i in range(len(self.progs)):
            self.map.update(struct.pack("<I", i), bytes(8))

    def close(self) -> None:
        for p in self.progs:
            p.close()
        self.map.close()


def load(kernel: Kernel, prog_type: ProgType = ProgType.CGROUP_SKB,
         attach_type: AttachType | None = EGRESS, name: str = "ok") -> Program:
    return Program.load(OK, prog_type, expected_attach_type=attach_type, name=name,
                        kernel=kernel)
