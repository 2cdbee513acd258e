"""cgbpf: cgroup BPF programs through bpf_link, on the real kernel or the model kernel.

Load a program, attach it to a cgroup through a link, and the link owns the attachment:
closing its last fd detaches the program (a crashed process leaves nothing behind),
pinning it in bpffs keeps it::

    import cgbpf
    from cgbpf import AttachType, MapType, ProgType, asm

    counts = cgbpf.Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1)
    prog = cgbpf.Program.load(asm.counter_program(counts), ProgType.CGROUP_SKB,
                              expected_attach_type=AttachType.CGROUP_INET_EGRESS)
    with cgbpf.Cgroup.create("my-service") as cg, cg.link(prog) as link:
        print(link.info(), cg.query(AttachType.CGROUP_INET_EGRESS))

Objects (each owns an fd, like ``socket.socket``: ``fileno``, ``close``, ``with``,
``dup``): :class:`Program`, :class:`Map`, :class:`Cgroup` (``link``, ``attach``,
``detach``, ``query``), :class:`Link` (``update``, ``pin``, ``detach``, ``info``) and
:class:`LegacyLink`, its stand-in on kernels without cgroup links.  Programs in C:
:class:`CollectionSpec` and :class:`Collection` load clang-compiled objects (programs,
maps, global variables, BTF: :mod:`cgbpf.btf`).  Listing:
:func:`programs`, :func:`maps`, :func:`links`.  Kernels: :func:`host` (the real one,
bpf(2) via ctypes) and ``cgbpf.model(...)``, the model kernel (pure Python, no
privileges; ``model("host")`` models the running kernel).  Errors: :class:`BpfError`
and its subclasses, each an ``OSError`` with the kernel's errno.  Features are probed
(:mod:`cgbpf.kernel.probe`); each docstring says the first Linux release a call needs.
Kernel behaviour, as measured: docs/kernel.md in the source tree.
"""

from typing import TYPE_CHECKING, Any

from .kernel import Kernel, default_kernel, host  # every use needs a kernel

if TYPE_CHECKING:
    from . import btf
    from ._load_options import LoadOptions
    from .cgroup import HEAD, TAIL, Cgroup, ProgramRef, Query
    from .collection import Collection, CollectionSpec
    from .errors import (
        BpfError,
        ClosedError,
        ExpectedProgramMismatch,
        LinkDefunct,
        MalformedObject,
        MissingPrivilege,
        NotACgroup2,
        NotSupported,
        StaleRevision,
        VerifierError,
    )
    from .fallback import FallbackWarning, LegacyLink
    from .kernel import model
    from .link import Link, LinkInfo, LinkLeakWarning, links
    from .map import MAP_FLAGS, Map, MapInfo, MapOptions, maps
    from .model import ModelKernel, Profile
    from .program import Program, ProgramInfo, TestRun, programs
    from .uapi import AttachMode, AttachType, LinkType, MapType, ProgType

#: Where each public name lives: module -> names ("" for the module itself).  Nothing is
#: imported until a name is first used, so a command pays only for what it touches
#: (``import cgbpf`` imports only :mod:`cgbpf.kernel`).
_HOMES = {
    ".cgroup": ("HEAD", "TAIL", "Cgroup", "ProgramRef", "Query"),
    ".errors": ("BpfError", "ClosedError", "ExpectedProgramMismatch", "LinkDefunct",
                "MalformedObject", "MissingPrivilege", "NotACgroup2", "NotSupported",
                "StaleRevision", "VerifierError"),
    ".fallback": ("FallbackWarning", "LegacyLink"),
    ".link": ("Link", "LinkInfo", "LinkLeakWarning", "links"),
    ".map": ("MAP_FLAGS", "Map", "MapInfo", "MapOptions", "maps"),
    ".program": ("Program", "ProgramInfo", "TestRun", "programs"),
    "._load_options": ("LoadOptions",),
    ".uapi": ("AttachMode", "AttachType", "LinkType", "MapType", "ProgType"),
    ".model": ("", "ModelKernel", "Profile"),
    ".btf": ("",),
    ".collection": ("Collection", "CollectionSpec"),
}
_LAZY = {name or module[1:]: (module, name) for module, names in _HOMES.items()
         for name in names}


def __getattr__(name: str) -> Any:
    """A public name, imported when first asked for: ``cgbpf.model`` is the model's
    package, which is callable (``cgbpf.model("6.1")``); ``CollectionSpec`` and
    ``Collection`` (clang-compiled objects, through pyelftools) are the loader's."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        found = importlib.import_module(module, __name__)
        value = getattr(found, attr) if attr else found
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "HEAD",
    "MAP_FLAGS",
    "TAIL",
    "AttachMode",
    "AttachType",
    "BpfError",
    "Cgroup",
    "ClosedError",
    "Collection",
    "CollectionSpec",
    "ExpectedProgramMismatch",
    "FallbackWarning",
    "Kernel",
    "LegacyLink",
    "Link",
    "LinkDefunct",
    "LinkInfo",
    "LinkLeakWarning",
    "LinkType",
    "LoadOptions",
    "MalformedObject",
    "Map",
    "MapInfo",
    "MapOptions",
    "MapType",
    "MissingPrivilege",
    "ModelKernel",
    "NotACgroup2",
    "NotSupported",
    "Profile",
    "ProgType",
    "Program",
    "ProgramInfo",
    "ProgramRef",
    "Query",
    "StaleRevision",
    "TestRun",
    "VerifierError",
    "btf",
    "default_kernel",
    "host",
    "links",
    "maps",
    "model",
    "programs",
]
