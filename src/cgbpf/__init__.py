"""cgbpf: cgroup BPF programs through bpf_link, on the real kernel or the model kernel.

The public surface is this module's names; everything else is internal layers.
"""

from typing import TYPE_CHECKING, Any

from .cgroup import HEAD, TAIL, Cgroup, ProgramRef, Query
from .errors import (
    BpfError,
    ClosedError,
    ExpectedProgramMismatch,
    LinkDefunct,
    MissingPrivilege,
    NotACgroup2,
    NotSupported,
    StaleRevision,
    VerifierError,
)
from .fallback import FallbackWarning, LegacyLink
from .kernel import Kernel, default_kernel, host
from .link import Link, LinkInfo, LinkLeakWarning, links
from .map import Map, MapInfo
from .program import Program, ProgramInfo
from .uapi import AttachMode, AttachType, LinkType, MapType, ProgType

if TYPE_CHECKING:
    from .kernel import model
    from .model import ModelKernel, Profile


def __getattr__(name: str) -> Any:
    """The model kernel is loaded when first asked for: ``cgbpf.model`` is its package,
    which is callable (``cgbpf.model("6.1")``); ``ModelKernel`` and ``Profile`` are its
    classes."""
    if name in ("model", "ModelKernel", "Profile"):
        import importlib

        package = importlib.import_module(".model", __name__)
        return package if name == "model" else getattr(package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HEAD",
    "TAIL",
    "AttachMode",
    "AttachType",
    "BpfError",
    "Cgroup",
    "ClosedError",
    "ExpectedProgramMismatch",
    "FallbackWarning",
    "Kernel",
    "LegacyLink",
    "Link",
    "LinkDefunct",
    "LinkInfo",
    "LinkLeakWarning",
    "LinkType",
    "Map",
    "MapInfo",
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
    "VerifierError",
    "default_kernel",
    "host",
    "links",
    "model",
]
