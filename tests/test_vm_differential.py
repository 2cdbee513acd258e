"""The ISA differential (VM-SPEC §8 layer 1): random loop-free programs (:mod:`vmgen`)
run by the real kernel and by the model's VM, each a CGROUP_SKB program run by
:meth:`Program.test_run` (``BPF_PROG_TEST_RUN``) on both kernels, on several inputs;
every case compares R0-R9 and eight stack slots, all 64 bits, read back from the
program's map value.  A program the model's verifier refuses (but the kernel loaded) is
given to the VM directly (:func:`cgbpf.model.vm.interp.run`), and counted.

One case is one (program, input) pair, compared on its own.  ``CGBPF_VM_DIFF_PROGRAMS``
and ``CGBPF_VM_DIFF_INPUTS`` (default 1,000 x 10) and ``CGBPF_VM_DIFF_SEED`` scale it.
"""

from __future__ import annotations

import os
import random
import time

import vmgen
from cgbpf import Map, MapType, Program, ProgType, asm, uapi
from cgbpf.errors import VerifierError
from cgbpf.model import ModelKernel
from cgbpf.model.objects import IdSpace, Prog
from cgbpf.model.vm import interp
from cgbpf.model.vm.env import Env, Task
from cgbpf.model.vm.errors import VmError
from cgbpf.model.vm.regions import Region
from cgtest import need_host

PROGRAMS = int(os.environ.get("CGBPF_VM_DIFF_PROGRAMS", "1000"))
INPUTS = int(os.environ.get("CGBPF_VM_DIFF_INPUTS", "10"))
SEED = int(os.environ.get("CGBPF_VM_DIFF_SEED", "20251"))
KEY = bytes(4)
#: Ethernet + IPv4 + UDP headers (an IPv4 frame must hold its IP header: 34 bytes at least)
PACKET = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100007f0000017f000002") \
    + bytes(8)


class Model:
    """The VM side: a model machine with the io map; programs loaded there and test-run
    (or, when the model's load-time checks refuse one the kernel took, the same bytes
    given to the VM directly, counted apart)."""

    def __init__(self) -> None:
        self.k = ModelKernel()
        self.io = Map.create(MapType.ARRAY, key_size=4, value_size=vmgen.VALUE_SIZE,
                             max_entries=1, name="io", kernel=self.k)
        model_map = self.k._machine.maps.get(self.io.id)
        assert model_map is not None
        self.map = model_map
        self.refused: list[str] = []

    def load(self, body: list[asm.Insn], code: bytes) -> Program | Prog:
        """The program loaded in the model, or, refused there, the model's object for
        the VM alone."""
        try:
            return Program.load(vmgen.program(self.io, body), ProgType.CGROUP_SKB,
                                kernel=self.k)
        except VerifierError as e:
            self.refused.append(str(e).splitlines()[0])
            return Prog(IdSpace(), lambda f: None, prog_type=ProgType.CGROUP_SKB,
                        expected_attach_type=0, insns=code, tag=b"", name=b"", maps=[
                            self.map, self.map], enforce_eat=False, uid=0)

    def run(self, prog: Program | Prog, value: bytes) -> tuple[int, ...] | str:
        self.map.update(KEY, value, 0)
        try:
            if isinstance(prog, Program):
                r0 = prog.test_run(PACKET).retval
            else:
                env = Env(Task(1, 0, 0, b"vmdiff", None), uapi.AttachType.CGROUP_INET_INGRESS)
                r0 = interp.run(prog, Region("skb", 192), env)
        except VmError as e:
            return f"{type(e).__name__}: {e}"
        assert r0 == 1
        return vmgen.outputs(self.map.lookup(KEY))

    @staticmethod
    def close(prog: Program | Prog) -> None:
        if isinstance(prog, Program):
            prog.close()


def test_isa_differential() -> None:
    host = need_host()
    rng = random.Random(SEED)
    model = Model()
    cases, mismatches, t0 = 0, [], time.perf_counter()
    with Map.create(MapType.ARRAY, key_size=4, value_size=vmgen.VALUE_SIZE, max_entries=1,
                    name="io", kernel=host) as io:
        for _ in range(PROGRAMS):
            body = vmgen.body(rng, rng.randrange(8, 40), rng.randrange(0, 7))
            code = asm.assemble(vmgen.program(io, body))
            with Program.load(code, ProgType.CGROUP_SKB, kernel=host) as prog:
                vm_prog = model.load(body, code)
                for _ in range(INPUTS):
                    value = vmgen.inputs(rng)
                    io.update(KEY, value)
                    assert prog.test_run(PACKET).retval == 1
                    got = io.lookup(KEY)
                    assert got is not None
                    want, vm = vmgen.outputs(got), model.run(vm_prog, value)
                    cases += 1
                    if vm != want:
                        mismatches.append((code, value, want, vm))
                model.close(vm_prog)
    took = time.perf_counter() - t0
    print(f"\nISA differential: {cases} cases ({PROGRAMS} programs x {INPUTS} inputs, seed "
          f"{SEED}) in {took:.1f} s, {len(mismatches)} mismatches; the model refused "
          f"{len(model.refused)} programs the kernel loaded (run on the VM directly)"
          + (f", first: {model.refused[0]}" if model.refused else ""))
    for code, value, want, vm in mismatches[:3]:
        print(asm.format_program(asm.disassemble(code)))
        print("inputs:", [hex(v) for v in vmgen.input_regs(value)])
        print("kernel:", [hex(v) for v in want])
        print("vm:    ", vm if isinstance(vm, str) else [hex(v) for v in vm])
    assert not mismatches, f"{len(mismatches)} of {cases} cases differ"


def test_generated_programs_run_in_the_vm() -> None:
    """Without the host: generated programs run to their end in the VM."""
    rng = random.Random(SEED)
    model = Model()
    for _ in range(50):
        body = vmgen.body(rng, rng.randrange(8, 40), rng.randrange(0, 7))
        prog = model.load(body, asm.assemble(vmgen.program(model.io, body)))
        assert not isinstance(model.run(prog, vmgen.inputs(rng)), str)
        model.close(prog)

