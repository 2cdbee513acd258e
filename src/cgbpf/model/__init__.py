"""The model kernel: a pure-Python implementation of the bpf(2) ABI subset that cgroup
BPF uses, with the errno and precedence of KERNEL-SEMANTICS.md (Linux 6.18 by default).

    from cgbpf.model import ModelKernel, Profile
    k = ModelKernel()                      # or ModelKernel("5.7"), ModelKernel(Profile.of(...))
    p = k.process(caps={"CAP_BPF"})        # another process on the same machine
    s = k.socket("/sys/fs/cgroup/x")       # a socket born in a cgroup (holds its BPF state)
    k.settle()                             # run deferred kernel work now

Layout: :mod:`.machine` (shared state, deferred work), :mod:`.vfs`, :mod:`.cgroupfs`
(cgroup tree and BPF state, §3/§6/§12), :mod:`.bpffs` (pins, §11), :mod:`.objects`
(programs, maps, links, IDs), :mod:`.process` (fd tables, capabilities),
:mod:`.memory` (user memory and attrs, §1.4), :mod:`.verifier` (PROG_LOAD checks, tag),
:mod:`.attach` (§4-§11), :mod:`.commands` (the command table and the other commands),
:mod:`.profiles` (kernel versions, §16/§19), :mod:`.kernel` (the ``Kernel`` protocol).
"""

from .kernel import ModelKernel
from .profiles import FEATURES, Profile

__all__ = ["FEATURES", "ModelKernel", "Profile"]
