"""The ABI table (cgbpf.uapi) against the system's <linux/bpf.h>, compiled with gcc.

Debian's header is older than the kernel: items it lacks are checked against the
offsets measured on 6.18 (KERNEL-SEMANTICS.md §1.4) instead, and every item must be
checked one way or the other."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cgbpf import uapi

#: §1.4: offsets of fields newer than Linux 6.1's header, measured on 6.18.
MEASURED_OFFSETS = {
    ("ProgAttachAttr", "relative_fd"): 20, ("ProgAttachAttr", "expected_revision"): 24,
    ("QueryAttr", "link_ids"): 40, ("QueryAttr", "link_attach_flags"): 48,
    ("QueryAttr", "revision"): 56, ("LinkCreateAttr", "relative_fd"): 16,
    ("LinkCreateAttr", "expected_revision"): 24, ("ObjAttr", "path_fd"): 16,
}
#: Constants newer than the header, with their 6.18 values (§1.2, §2.1).
MEASURED_CONSTANTS = {"BPF_F_BEFORE": 8, "BPF_F_AFTER": 16, "BPF_F_ID": 32,
                      "BPF_F_PREORDER": 64, "BPF_F_LINK": 8192, "BPF_F_PATH_FD": 1 << 14}


def constants() -> dict[str, int]:
    """Every named value in uapi, under its C name."""
    out = {f"BPF_{c.name}": int(c) for c in uapi.Cmd}
    out |= {f"BPF_PROG_TYPE_{t.name}": int(t) for t in uapi.ProgType}
    out |= {f"BPF_MAP_TYPE_{t.name}": int(t) for t in uapi.MapType}
    out |= {f"BPF_{t.name}": int(t) for t in uapi.AttachType}
    out |= {f"BPF_LINK_TYPE_{t.name}": int(t) for t in uapi.LinkType}
    flags = {"ALLOW_OVERRIDE", "ALLOW_MULTI", "REPLACE", "BEFORE", "AFTER", "ID", "PREORDER",
             "LINK", "QUERY_EFFECTIVE", "RDONLY", "WRONLY", "PATH_FD"}
    out |= {f"BPF_F_{f}": getattr(uapi, f"F_{f}") for f in flags}
    return out


def layout_items() -> list[tuple[str, str, str]]:
    """(key, C expression, expected value) for every offset, member size and type size."""
    items = []
    for name, (c_type, fields) in uapi.LAYOUTS.items():
        cls = getattr(uapi, name)
        for field, _, member in fields:
            if member is None:
                continue
            f = getattr(cls, field)
            items.append((f"{name}.{field}@", f"offsetof({c_type}, {member})", str(f.offset)))
            items.append((f"{name}.{field}#", f"sizeof((({c_type} *)0)->{member})", str(f.size)))
    return items


def compile_and_run(items: list[tuple[str, str, str]], tmp: Path) -> tuple[dict[str, str],
                                                                           set[str]]:
    """Print every expression the header knows; report the keys it does not know."""
    lines = [f'printf("%s\\t%llu\\n", "{key}", (unsigned long long)({expr}));'
             for key, expr, _ in items]
    head = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void){\n"
    missing: set[str] = set()
    while True:
        kept = [(it, line) for it, line in zip(items, lines, strict=True) if it[0] not in missing]
        src = head + "\n".join(line for _, line in kept) + "\nreturn 0;}\n"
        (tmp / "abi.c").write_text(src)
        cc = subprocess.run(["gcc", "-o", str(tmp / "abi"), str(tmp / "abi.c")],
                            capture_output=True, text=True)
        if cc.returncode == 0:
            break
        bad = {int(m) - 5 for m in re.findall(r"abi\.c:(\d+):\d+: error", cc.stderr)}
        assert bad, cc.stderr
        missing |= {kept[i][0][0] for i in bad if 0 <= i < len(kept)}
    run = subprocess.run([str(tmp / "abi")], capture_output=True, text=True, check=True)
    return dict(line.split("\t") for line in run.stdout.splitlines()), missing


def need_gcc() -> None:
    if shutil.which("gcc") is None or not os.path.exists("/usr/include/linux/bpf.h"):
        problem = "gcc and /usr/include/linux/bpf.h are needed (make deps installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def test_layouts_match_header(tmp_path: Path) -> None:
    need_gcc()
    items = layout_items()
    got, missing = compile_and_run(items, tmp_path)
    for key, _, want in items:
        if key in missing:
            name, field = key[:-1].split(".")
            if key.endswith("@"):
                assert int(want) == MEASURED_OFFSETS[(name, field)], key
        else:
            assert got[key] == want, key
    assert {k[:-1] for k in missing if k.endswith("@")} == {
        f"{n}.{f}" for n, f in MEASURED_OFFSETS}, "the header should lack exactly these"


def test_constants_match_header(tmp_path: Path) -> None:
    need_gcc()
    values = constants()
    items = [(name, name, str(v)) for name, v in values.items()]
    got, missing = compile_and_run(items, tmp_path)
    for name, v in values.items():
        if name in missing:
            newer = name.startswith("BPF_CGROUP_UNIX") or name in MEASURED_CONSTANTS
            assert newer, f"{name} is neither in the header nor newer than it"
            assert MEASURED_CONSTANTS.get(name, v) == v
        else:
            assert int(got[name]) == v, name


def test_sizes(tmp_path: Path) -> None:
    """Each layout is a prefix of its C type (the header's, and 6.18's where measured);
    bpf_link_info is exactly the 64 bytes 6.18 writes."""
    need_gcc()
    c_types = {c for c, _ in uapi.LAYOUTS.values()}
    got, missing = compile_and_run([(c, f"sizeof({c})", "") for c in c_types], tmp_path)
    assert not missing
    for name, (c_type, _) in uapi.LAYOUTS.items():
        size = ctypes.sizeof(getattr(uapi, name))
        assert size <= uapi.MEASURED_SIZES.get(c_type, int(got[c_type])), name
        if c_type != "struct bpf_link_info":  # the header's (6.1: 48) is older than 6.18's
            assert size <= int(got[c_type]), name
    assert ctypes.sizeof(uapi.LinkInfo) == uapi.MEASURED_SIZES["struct bpf_link_info"]


def test_cgroup_attach_table() -> None:
    """§2.1: 28 cgroup attach types plus LSM_CGROUP, each with a program type."""
    assert len(uapi.CGROUP_PROG_TYPE) == 29 and set(uapi.CGROUP_PROG_TYPE) == set(
        uapi.AttachType)
    sock_addr = [t for t, p in uapi.CGROUP_PROG_TYPE.items()
                 if p is uapi.ProgType.CGROUP_SOCK_ADDR]
    assert len(sock_addr) == 17
