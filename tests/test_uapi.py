"""The ABI (cgbpf.uapi) against the system's <linux/bpf.h> (and <linux/magic.h>,
<linux/capability.h>, <fcntl.h> for the facts around it), compiled with gcc; field names
checked by mypy and at run time; the model's attr ends taken from the layouts.

Debian's header is older than the kernel: items it lacks are checked against the
offsets measured on 6.18 (docs/kernel.md §1.4) instead, and every item must be
checked one way or the other."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cgbpf
from cgbpf import uapi
from cgbpf.kernel import Kernel
from cgbpf.model.profiles import NAMES, Profile
from cgbpf.uapi import Cmd
from cgtest import need_host

#: §1.4: offsets of fields newer than Linux 6.1's header, measured on 6.18.
MEASURED_OFFSETS = {
    ("ProgAttachAttr", "relative_fd"): 20, ("ProgAttachAttr", "expected_revision"): 24,
    ("QueryAttr", "link_ids"): 40, ("QueryAttr", "link_attach_flags"): 48,
    ("QueryAttr", "revision"): 56, ("LinkCreateAttr", "relative_fd"): 16,
    ("LinkCreateAttr", "expected_revision"): 24, ("ObjAttr", "path_fd"): 16,
    ("BtfLoadAttr", "btf_log_true_size"): 28, ("BtfLoadAttr", "btf_flags"): 32,
    ("BtfLoadAttr", "btf_token_fd"): 36,
}
#: Constants newer than the header, with their 6.18 values (§1.2, §2.1).
MEASURED_CONSTANTS = {"BPF_F_BEFORE": 8, "BPF_F_AFTER": 16, "BPF_F_ID": 32,
                      "BPF_F_PREORDER": 64, "BPF_F_LINK": 8192, "BPF_F_PATH_FD": 1 << 14,
                      "BPF_F_XDP_DEV_BOUND_ONLY": 64, "BPF_F_TEST_REG_INVARIANTS": 128,
                      "BPF_F_TOKEN_FD": 1 << 16}
HEADERS = ("stdio.h", "stddef.h", "fcntl.h", "linux/version.h", "linux/bpf.h",
           "linux/magic.h", "linux/capability.h")


def constants() -> dict[str, int]:
    """Every named value in uapi, under its C name."""
    out = {f"BPF_{c.name}": int(c) for c in uapi.Cmd}
    out |= {f"BPF_PROG_TYPE_{t.name}": int(t) for t in uapi.ProgType}
    out |= {f"BPF_MAP_TYPE_{t.name}": int(t) for t in uapi.MapType}
    out |= {f"BPF_{t.name}": int(t) for t in uapi.AttachType}
    out |= {f"BPF_LINK_TYPE_{t.name}": int(t) for t in uapi.LinkType}
    flags = {"ALLOW_OVERRIDE", "ALLOW_MULTI", "REPLACE", "BEFORE", "AFTER", "ID", "PREORDER",
             "LINK", "QUERY_EFFECTIVE", "RDONLY", "WRONLY", "RDONLY_PROG", "WRONLY_PROG",
             "MMAPABLE", "PATH_FD", "STRICT_ALIGNMENT",
             "ANY_ALIGNMENT", "TEST_RND_HI32", "TEST_STATE_FREQ", "SLEEPABLE",
             "XDP_HAS_FRAGS", "XDP_DEV_BOUND_ONLY", "TEST_REG_INVARIANTS", "TOKEN_FD", "LOCK",
             "TEST_SKB_CHECKSUM_COMPLETE"}
    out |= {f"BPF_F_{f}": getattr(uapi, f"F_{f}") for f in flags}
    out |= {f"BPF_{f}": getattr(uapi, f) for f in ("ANY", "NOEXIST", "EXIST")}
    out |= {"BPF_PSEUDO_CALL": uapi.PSEUDO_CALL, "BPF_PSEUDO_FUNC": uapi.PSEUDO_FUNC}
    out |= {"CGROUP2_SUPER_MAGIC": uapi.CGROUP2_MAGIC, "CGROUP_SUPER_MAGIC": uapi.CGROUP1_MAGIC,
            "BPF_FS_MAGIC": uapi.BPF_FS_MAGIC, "TMPFS_MAGIC": uapi.TMPFS_MAGIC,
            "ANON_INODE_FS_MAGIC": uapi.ANON_INODE_FS_MAGIC}
    out |= dict(uapi.CAPABILITIES)
    out |= {"_LINUX_CAPABILITY_VERSION_3": uapi.CAPABILITY_VERSION_3, "AT_FDCWD": uapi.AT_FDCWD}
    return out


def layout_items() -> list[tuple[str, str, str]]:
    """(key, C expression, expected value) for every offset, member size and type size."""
    items = []
    for name, cls in uapi.LAYOUTS.items():
        c_type = cls.c_type
        for field, _, member in cls.fields:
            if member is None:
                continue
            off, size = uapi.offset_of(cls, field), uapi.size_of(cls, field)
            items.append((f"{name}.{field}@", f"offsetof({c_type}, {member})", str(off)))
            items.append((f"{name}.{field}#", f"sizeof((({c_type} *)0)->{member})", str(size)))
    return items


def compile_and_run(items: list[tuple[str, str, str]], tmp: Path) -> tuple[dict[str, str],
                                                                           set[str]]:
    """Print every expression the header knows; report the keys it does not know."""
    lines = [f'printf("%s\\t%lld\\n", "{key}", (long long)({expr}));'
             for key, expr, _ in items]
    head = "".join(f"#include <{h}>\n" for h in HEADERS) + "int main(void){\n"
    first = head.count("\n") + 1  # the line of the first printf
    missing: set[str] = set()
    while True:
        kept = [(it, line) for it, line in zip(items, lines, strict=True) if it[0] not in missing]
        src = head + "\n".join(line for _, line in kept) + "\nreturn 0;}\n"
        (tmp / "abi.c").write_text(src)
        cc = subprocess.run(["gcc", "-o", str(tmp / "abi"), str(tmp / "abi.c")],
                            capture_output=True, text=True)
        if cc.returncode == 0:
            break
        bad = {int(m) - first for m in re.findall(r"abi\.c:(\d+):\d+: error", cc.stderr)}
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
    c_types = {cls.c_type for cls in uapi.LAYOUTS.values()}
    got, missing = compile_and_run([(c, f"sizeof({c})", "") for c in c_types], tmp_path)
    assert not missing
    for name, cls in uapi.LAYOUTS.items():
        c_type = cls.c_type
        size = ctypes.sizeof(cls)
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


def test_numbers_past_the_layouts(tmp_path: Path) -> None:
    """The sizes and offsets uapi keeps beside the layouts: the header's where it is new
    enough to have them, 6.18's (§1.4) where it is older."""
    need_gcc()
    items = [("version", "LINUX_VERSION_CODE", ""),
             ("token", "offsetof(union bpf_attr, prog_token_fd)", ""),
             ("link_create", "sizeof(((union bpf_attr *)0)->link_create)", ""),
             ("link_info", "sizeof(struct bpf_link_info)", "")]
    got, missing = compile_and_run(items, tmp_path)
    version = int(got["version"]) >> 8  # (major << 8) + minor

    def since(major: int, minor: int) -> bool:
        return version >= (major << 8) + minor

    assert ("token" in missing) == (not since(6, 9))
    if not since(6, 9):
        assert uapi.PROG_TOKEN_FD_OFFSET == 144
    else:
        assert int(got["token"]) == uapi.PROG_TOKEN_FD_OFFSET
    assert int(got["link_info"]) == (ctypes.sizeof(uapi.LinkInfo) if since(6, 6)
                                     else uapi.LINK_INFO_SIZE_BEFORE_6_6)
    assert ctypes.sizeof(uapi.LinkInfo) == 64 and uapi.LINK_INFO_SIZE_BEFORE_6_6 == 48
    link_create = int(got["link_create"])  # 6.1: 48; 6.18: 64
    assert uapi.end_of(uapi.LinkCreateAttr, "expected_revision") <= link_create
    assert uapi.LINK_CREATE_SIZE == 64
    if since(6, 18) and not since(6, 19):
        assert link_create == uapi.LINK_CREATE_SIZE
    elif not since(6, 18):
        assert link_create <= uapi.LINK_CREATE_SIZE


# --- the layouts as declared -------------------------------------------------------------


def test_layouts_declared_once() -> None:
    """Every layout in uapi is in LAYOUTS, built from its declarations: ``_fields_``,
    ``fields`` and ``c_members`` say the same, and only padding has no C member."""
    classes = {n: c for n, c in vars(uapi).items()
               if isinstance(c, type) and issubclass(c, uapi.Layout) and c is not uapi.Layout}
    assert classes == uapi.LAYOUTS and len(classes) == 18
    for name, cls in uapi.LAYOUTS.items():
        assert cls.__name__ == name and issubclass(cls, ctypes.Structure)
        assert [(f.name, f.ctype) for f in cls.fields] == [tuple(f) for f in cls._fields_]
        assert cls.field_names == {f.name for f in cls.fields}
        assert {f.name for f in cls.fields if f.c_member is None} <= {"_reserved"}
        assert cls.c_members == {f.name: f.c_member for f in cls.fields if f.c_member}
        for f in cls.fields:
            assert uapi.end_of(cls, f.name) == (uapi.offset_of(cls, f.name)
                                                + ctypes.sizeof(f.ctype))
    assert uapi.QueryAttr.c_members["prog_cnt"] == "query.prog_cnt"
    assert uapi.MapCreateAttr.c_members["map_name"] == "map_name"  # the field's own name


def test_a_declaration_needs_its_annotation() -> None:
    with pytest.raises(TypeError, match="unpaired: \\['x'\\]"):
        class Bad(uapi.Layout, c_type="union bpf_attr"):
            x = uapi.u32()
    assert "Bad" not in uapi.LAYOUTS


@pytest.mark.parametrize("name", list(uapi.LAYOUTS))
def test_unknown_field_is_refused(name: str) -> None:
    """A misspelt field: a TypeError from the constructor naming the layout, the field
    and every valid field; an AttributeError on assignment; the right names work."""
    cls = uapi.LAYOUTS[name]
    first = cls.fields[0].name
    valid = ", ".join(f.name for f in cls.fields)
    with pytest.raises(TypeError) as e:
        cls(**{first: 1, first + "x": 3})
    assert str(e.value) == (f"{name} ({cls.c_type}) has no field '{first}x'; its fields"
                            f" are {valid}")
    attr = cls(**{first: 1})
    with pytest.raises(AttributeError, match=f"'{name}' object has no attribute '{first}x'"):
        setattr(attr, first + "x", 3)
    assert not hasattr(attr, "__dict__")
    with pytest.raises(AttributeError):
        getattr(attr, first + "x")
    with pytest.raises(TypeError):
        cls(1)  # keywords only
    with pytest.raises(TypeError, match=f"has no field '{first}x'"):
        uapi.end_of(cls, first + "x")
    setattr(attr, first, 2)
    assert getattr(attr, first) == 2 and bytes(attr)[0] == 2
    assert bytes(attr)[4:] == bytes(ctypes.sizeof(cls) - 4)  # the other fields: zero


def test_the_typo_of_the_issue() -> None:
    with pytest.raises(TypeError) as e:
        uapi.LinkUpdateAttr(link_fdd=3)
    assert str(e.value) == ("LinkUpdateAttr (union bpf_attr) has no field 'link_fdd'; its"
                            " fields are link_fd, new_prog_fd, flags, old_prog_fd")
    assert bytes(uapi.LinkUpdateAttr(link_fd=3)) == bytes([3]) + bytes(15)


MYPY_PROBE = """\
import ctypes
from cgbpf import uapi
ok = uapi.LinkUpdateAttr(link_fd=3, new_prog_fd=4)
ok.flags = uapi.F_REPLACE
tag: bytes = bytes(uapi.ProgInfo().tag) + uapi.ProgInfo().name
size: int = ctypes.sizeof(ok) + uapi.end_of(uapi.LinkUpdateAttr, "flags")
uapi.LinkUpdateAttr(link_fdd=3)  # E: call-arg
ok.old_prog_fdd = 5  # E: attr-defined
print(ok.new_prog)  # E: attr-defined
uapi.MapCreateAttr(map_name="x")  # E: arg-type
uapi.LinkDetachAttr(3)  # E: call-arg
"""


def test_mypy_catches_a_misspelt_field(tmp_path: Path) -> None:
    """The field names are typed: mypy --strict reports each misspelling (and a wrong
    type, a positional argument) on its line, and nothing on the correct lines."""
    pytest.importorskip("mypy")
    (tmp_path / "probe.py").write_text(MYPY_PROBE)
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                          "--cache-dir", os.devnull, "--python-version", "3.10", "probe.py"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "MYPYPATH": str(Path(uapi.__file__).parents[1])})
    found = {(int(line), code) for line, code in re.findall(
        r"^probe\.py:(\d+): error: .*\[([a-z-]+)\]$", run.stdout, re.M)}
    want = {(i, m.group(1)) for i, text in enumerate(MYPY_PROBE.splitlines(), 1)
            if (m := re.search(r"# E: (\S+)", text))}
    assert found == want, run.stdout + run.stderr


# --- the model takes its attr ends from the layouts ----------------------------------------

#: docs/kernel.md §1.4, "CHECK_ATTR ends" on 6.18, the numbers the tests measured.
ATTR_ENDS_6_18 = {
    Cmd.PROG_ATTACH: 32, Cmd.PROG_DETACH: 32, Cmd.PROG_QUERY: 64, Cmd.LINK_CREATE: 64,
    Cmd.LINK_UPDATE: 16, Cmd.LINK_DETACH: 4, Cmd.OBJ_PIN: 20, Cmd.OBJ_GET: 20,
    Cmd.OBJ_GET_INFO_BY_FD: 16, Cmd.PROG_GET_NEXT_ID: 8, Cmd.MAP_GET_NEXT_ID: 8,
    Cmd.LINK_GET_NEXT_ID: 8, Cmd.PROG_GET_FD_BY_ID: 4, Cmd.LINK_GET_FD_BY_ID: 4,
    Cmd.MAP_GET_FD_BY_ID: 12, Cmd.MAP_CREATE: 72, Cmd.PROG_LOAD: 116,
    Cmd.BTF_LOAD: 40, Cmd.BTF_GET_FD_BY_ID: 12, Cmd.BTF_GET_NEXT_ID: 8, Cmd.MAP_FREEZE: 4,
    Cmd.MAP_LOOKUP_ELEM: 32, Cmd.MAP_UPDATE_ELEM: 32, Cmd.MAP_DELETE_ELEM: 16,
    Cmd.MAP_GET_NEXT_KEY: 24, Cmd.PROG_TEST_RUN: 76,
}
#: The older column: profile -> the commands whose end differs from 6.18's.
ATTR_ENDS_OLDER = {
    "5.6": {Cmd.PROG_ATTACH: 20, Cmd.PROG_DETACH: 12, Cmd.PROG_QUERY: 28,
            Cmd.LINK_CREATE: 16, Cmd.OBJ_PIN: 16, Cmd.OBJ_GET: 16},
    "5.9": {Cmd.PROG_ATTACH: 20, Cmd.PROG_DETACH: 12, Cmd.PROG_QUERY: 28, Cmd.OBJ_PIN: 16,
            Cmd.OBJ_GET: 16},
    "6.1": {Cmd.PROG_ATTACH: 20, Cmd.PROG_DETACH: 12, Cmd.PROG_QUERY: 40, Cmd.OBJ_PIN: 16,
            Cmd.OBJ_GET: 16},
    "6.6": {},
}


@pytest.mark.parametrize("profile", ["6.18", *ATTR_ENDS_OLDER])
def test_model_attr_ends(profile: str) -> None:
    """Each end the model checks is where the layout's last field ends (LINK_CREATE from
    5.9: ``sizeof(attr.link_create)``), and those are §1.4's numbers."""
    p = Profile.of(profile)
    want = ATTR_ENDS_6_18 | ATTR_ENDS_OLDER.get(profile, {})
    assert set(want) == set(Cmd)
    for cmd in Cmd:
        last = p.last_field(cmd)
        derived = uapi.LINK_CREATE_SIZE if last is None else uapi.end_of(*last)
        assert p.attr_end(cmd) == derived == want[cmd], (profile, cmd.name, last)


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_ends_attrs_at_a_field(name: str) -> None:
    p = Profile.of(name)
    for cmd in Cmd:
        last = p.last_field(cmd)
        assert last is not None or cmd == Cmd.LINK_CREATE
        assert p.attr_end(cmd) == (uapi.LINK_CREATE_SIZE if last is None
                                   else uapi.end_of(*last))
    assert p.link_info_size == (64 if p.has("link_info_64") else 48)


def union_size(k: Kernel) -> int:
    """Where E2BIG starts: the first byte of a 176-byte attr whose being non-zero makes
    PROG_GET_NEXT_ID refuse with E2BIG (past ``sizeof(union bpf_attr)``)."""
    for i in range(8, 176):
        attr = (ctypes.c_ubyte * 176)()
        attr[i] = 1
        try:
            k.bpf(Cmd.PROG_GET_NEXT_ID, attr, 176)
        except OSError as e:
            if e.errno == errno.E2BIG:
                return i
    raise AssertionError("no E2BIG up to 176 bytes")


def test_union_size_host_and_model_agree() -> None:
    """The host's ``sizeof(union bpf_attr)`` is the model's, calibrated from it (and in
    the kernel matrix: 144 on Debian 6.1, 152 on 6.12, 168 on 6.18 here)."""
    host, model = need_host(), cgbpf.model("host")
    assert union_size(host) == union_size(model) == model.profile.attr_size
