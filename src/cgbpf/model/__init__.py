"""The model kernel: a pure-Python implementation of the bpf(2) ABI subset that cgroup
BPF uses, with the errno and precedence of docs/kernel.md (Linux 6.18 by default).

This package is also what ``cgbpf.model`` names, and calling it makes a model machine
(``cgbpf.model("6.1")`` is ``ModelKernel("6.1")``): one name, loaded only when used.

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

import sys
import types
from typing import Any

from .kernel import ModelKernel
from .profiles import FEATURES, Profile

__all__ = ["FEATURES", "ModelKernel", "Profile"]


class _CallablePackage(types.ModuleType):
    """This package, callable: ``cgbpf.model(version, **options)`` (see
    :func:`cgbpf.kernel.model`)."""

    def __call__(self, version: str | Profile = "6.18", **options: Any) -> ModelKernel:
        return ModelKernel(version, **options)


sys.modules[__name__].__class__ = _CallablePackage
