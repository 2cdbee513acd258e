"""cgbpf: cgroup BPF programs through bpf_link, on the real kernel or the model kernel.

The public surface is this module's names; everything else is internal layers.
"""

# The model package is loaded first so that `cgbpf.model` below stays the function (a
# submodule imported later would otherwise take its name); its classes are exported here.
from .model import ModelKernel, Profile

# isort: split
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
from .kernel import Kernel, default_kernel, host, model
from .link import Link, LinkInfo, LinkLeakWarning, links
from .map import Map, MapInfo
from .program import Program, ProgramInfo
from .uapi import AttachMode, AttachType, LinkType, MapType, ProgType

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
