"""BTF in the kernel, on the host and the model: BTF_LOAD of good and bad blobs (the same
errno and the same last log line), BTF ids, info and fdinfo, PROG_LOAD with
func_info/line_info (each check_btf_func/check_btf_line refusal with its errno), the
new BTF kinds per profile, and (host) the verifier log quoting the C source line."""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Iterator

import pytest
from elftools.elf.elffile import ELFFile

from cgbpf import MissingPrivilege, Program, ProgType, VerifierError, _sys, asm, model, uapi
from cgbpf.btf import Ext, Spec, func_info_bytes, line_info_bytes
from cgbpf.btf.handle import Handle, handles
from cgbpf.kernel import Kernel, probe
from cgbpf.program import LoadOptions
from cgbpf.uapi import Cmd, btf_type, raw_btf
from cgtest import EGRESS, host_only

E, ENOTSUPP = errno, uapi.ENOTSUPP
INT = btf_type(1, 1, 0, 4, 1 << 24 | 32)  # [1] int
S = b"\0int\0"


def hdr(type_len: int, str_len: int, *, magic: int = uapi.BTF_MAGIC, version: int = 1,
        flags: int = 0, hdr_len: int = 24, type_off: int = 0, str_off: int | None = None,
        ) -> bytes:
    return struct.pack("<HBBIIIII", magic, version, flags, hdr_len, type_off, type_len,
                       type_len if str_off is None else str_off, str_len)


#: name -> (raw BTF, errno or 0, the log's last line); measured on 6.18.
BLOBS: dict[str, tuple[bytes, int, str]] = {
    "int": (raw_btf(INT, S), 0, "[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=SIGNED"),
    "short": (raw_btf(INT, S)[:6], E.EINVAL, "hdr_len not found"),
    "magic": (hdr(16, 5, magic=0x9FEB) + INT + S, E.EINVAL, "Invalid magic"),
    "version": (hdr(16, 5, version=2) + INT + S, ENOTSUPP, "Unsupported version"),
    "flags": (hdr(16, 5, flags=1) + INT + S, ENOTSUPP, "Unsupported flags"),
    "no data": (hdr(0, 0), E.EINVAL, "No data"),
    "hdr_len past the end": (hdr(16, 5, hdr_len=200) + INT + S, E.EINVAL,
                             "btf_header not found"),
    "unknown header bytes": (hdr(16, 5, hdr_len=28) + b"\1\0\0\0" + INT + S, E.E2BIG,
                             "Unsupported btf_header"),
    "longer zero header": (hdr(16, 5, hdr_len=28) + bytes(4) + INT + S, 0,
                           "[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=SIGNED"),
    "no strings": (raw_btf(INT, b""), E.EINVAL, "Invalid string section"),
    "strings start": (raw_btf(INT, b"xint\0"), E.EINVAL, "Invalid string section"),
    "strings end": (raw_btf(INT, b"\0int"), E.EINVAL, "Invalid string section"),
    "no types": (raw_btf(b"", S), E.EINVAL, "No type found"),
    "too long": (hdr(16, 100) + INT + S, E.EINVAL, "Total section length too long"),
    "overlap": (hdr(16, 5, str_off=4) + INT + S, E.EINVAL, "Section overlap found"),
    "gap": (hdr(16, 5, str_off=20) + INT + bytes(4) + S, E.EINVAL,
            "Unsupported section found"),
    "strings first": (hdr(16, 5, type_off=5, str_off=0) + S + INT, E.EINVAL,
                      "String section is not at the end"),
    "kind 0": (raw_btf(btf_type(0, 0, 0, 0), S), E.EINVAL, "[1] Invalid kind:0"),
    "kind 31": (raw_btf(btf_type(0, 31, 0, 0), S), E.EINVAL, "[1] Invalid kind:31"),
    "bits past size": (raw_btf(btf_type(1, 1, 0, 4, 40), S), E.EINVAL,
                       "[1] INT int size=4 bits_offset=0 nr_bits=40 encoding=(none) "
                       "nr_bits exceeds type_size"),
    "name offset": (raw_btf(btf_type(100, 1, 0, 4, 32), S), E.EINVAL,
                    "[1] Invalid name_offset:100"),
    "truncated": (raw_btf(INT[:12], S), E.EINVAL, "[1] INT int meta_left:0 meta_needed:4"),
    "vlen": (raw_btf(btf_type(1, 1, 1, 4, 32), S), E.EINVAL,
             "[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=(none) vlen != 0"),
    "ptr to nothing": (raw_btf(INT + btf_type(0, 2, 0, 5), S), E.EINVAL,
                       "[2] PTR (anon) type_id=5 Invalid type_id"),
    "named ptr": (raw_btf(INT + btf_type(1, 2, 0, 1), S), E.EINVAL,
                  "[2] PTR int type_id=1 Invalid name"),
    "ptr loop": (raw_btf(btf_type(0, 2, 0, 1), S), E.EEXIST,
                 "[1] PTR (anon) type_id=1 Loop detected"),
    "func of an int": (raw_btf(INT + btf_type(5, 12, 0, 1), b"\0int\0main\0"), E.EINVAL,
                       "[2] FUNC main type_id=1 Invalid type_id"),
    "func": (raw_btf(INT + btf_type(0, 13, 0, 1) + btf_type(5, 12, 1, 2), b"\0int\0main\0"),
             0, "[3] FUNC main type_id=2"),
    "datasec": (raw_btf(INT + btf_type(5, 14, 0, 1, 1) + btf_type(7, 15, 1, 4, 2, 0, 4),
                        b"\0int\0x\0.bss\0"), 0, "\t type_id=2 offset=0 size=4"),
    "empty datasec": (raw_btf(INT + btf_type(5, 14, 0, 1, 1) + btf_type(7, 15, 1, 0, 2, 0, 4),
                              b"\0int\0x\0.bss\0"), E.EINVAL,
                      "[3] DATASEC .bss size=0 vlen=1 size == 0"),
    "member past the struct": (
        raw_btf(INT + btf_type(5, 4, 1, 4, 7, 1, 32), b"\0int\0s\0a\0"), E.EINVAL,
        "\ta type_id=1 bits_offset=32 Member exceeds struct_size"),
    "float size": (raw_btf(btf_type(1, 16, 0, 3), b"\0float\0"), E.EINVAL,
                   "[1] FLOAT float size=3 Invalid type_size"),
    "decl_tag of an int": (raw_btf(INT + btf_type(5, 17, 0, 1, -1), b"\0int\0tag\0"),
                           E.EINVAL, "[2] DECL_TAG tag type=1 component_idx=-1 Invalid type_id"),
    **{key: (raw_btf(*blob), 0, "") for key, blob in probe.BTF_KIND_PROBES.items()},
}


def last_line(log: str) -> str:
    lines = log.rstrip("\n").splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("case", list(BLOBS))
def test_btf_load(kernel: Kernel, case: str) -> None:
    """Each blob: the errno (raised as a VerifierError of BTF_LOAD with the log), and the
    last line of the BTF log, as on 6.18; a good blob loads, with the same log."""
    data, want, line = BLOBS[case]
    log = ctypes.create_string_buffer(1 << 16)
    buf = ctypes.create_string_buffer(data, len(data))
    try:
        kernel.close(_sys.btf_load(kernel, buf, log_buf=log, log_level=1))
        got = 0
    except OSError as e:
        got = e.errno or 0
    assert got == want
    if line:
        assert last_line(log.value.decode()) == line
    if want:
        with pytest.raises(VerifierError) as exc:
            Handle.load(data, kernel=kernel)
        assert exc.value.errno == want and exc.value.command == "BTF_LOAD"
        assert "magic: 0x" in exc.value.log or exc.value.log.strip() in (
            "hdr_len not found", "btf_header not found", "Unsupported btf_header")
    else:
        Handle.load(data, kernel=kernel).close()


def test_btf_load_attr(kernel: Kernel) -> None:
    """BTF_LOAD's own checks: the size limit (16 MiB: E2BIG), the log attributes
    (EINVAL), the copy (EFAULT), btf_flags (EINVAL), and the log's true size."""
    data = raw_btf(INT, S)
    buf = ctypes.create_string_buffer(data, len(data))

    def load(**fields: int) -> int:
        attr = uapi.BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(data))
        for name, value in fields.items():
            setattr(attr, name, value)
        try:
            kernel.close(kernel.bpf(Cmd.BTF_LOAD, attr))
        except OSError as e:
            return e.errno or 0
        return 0

    log = ctypes.create_string_buffer(4096)
    assert load(btf_size=(16 << 20) + 1) == E.E2BIG
    assert load(btf=8) == E.EFAULT
    assert load(btf=0, btf_size=0) == E.EINVAL
    assert load(btf_log_size=100) == E.EINVAL  # a size without a buffer
    assert load(btf_log_buf=ctypes.addressof(log), btf_log_size=4096) == E.EINVAL  # level 0
    # a level without a buffer: no log (6.4's log rework); Debian 6.1 refuses it
    assert load(btf_log_level=1) in ((0, E.EINVAL) if kernel.name == "host" else (0,))
    assert load(btf_log_level=1 << 5) == E.EINVAL
    assert load(btf_flags=1) == E.EINVAL
    attr = uapi.BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(data),
                            btf_log_buf=ctypes.addressof(log), btf_log_size=4096,
                            btf_log_level=1)
    kernel.close(kernel.bpf(Cmd.BTF_LOAD, attr))
    # btf_log_true_size came with 6.4's log rework: Debian 6.1 leaves it 0
    assert attr.btf_log_true_size == len(log.value) + 1 or (
        kernel.name == "host" and attr.btf_log_true_size == 0)
    small = ctypes.create_string_buffer(16)
    # Debian 6.1 wants at least 128 bytes of log (EINVAL); 6.4's rework truncates instead
    assert load(btf_log_buf=ctypes.addressof(small), btf_log_size=16, btf_log_level=1) in (
        (E.ENOSPC, E.EINVAL) if kernel.name == "host" else (E.ENOSPC,))


def test_btf_object(kernel: Kernel) -> None:
    """A BTF object's id, size, data, fd kind and fdinfo; BTF_GET_FD_BY_ID (no
    open_flags), BTF_GET_NEXT_ID; freed with its last fd."""
    data = BLOBS["func"][0]
    with Handle.load(data, kernel=kernel) as h:
        info = h.info()
        assert info.size == len(data) and info.id > 0 and info.name == ""
        assert not info.kernel_btf and h.data() == data
        assert kernel.fd_kind(h.fd) == "btf"
        fdinfo = kernel.fdinfo(h.fd)
        assert fdinfo["btf_id"] == str(info.id) and fdinfo["flags"] == "02000000"
        with Handle.from_id(info.id, kernel=kernel) as again:
            assert again.id == h.id and again.data() == data
        assert info.id in {i.id for i in handles(kernel=kernel)}
        with pytest.raises(OSError) as e:
            _sys.fd_by_id(kernel, Cmd.BTF_GET_FD_BY_ID, info.id, uapi.F_RDONLY)
        assert e.value.errno == E.EINVAL
        raw = uapi.BtfInfo()
        part = ctypes.create_string_buffer(10)
        raw.btf, raw.btf_size = ctypes.addressof(part), 10
        assert _sys.get_info(kernel, h.fd, raw) == ctypes.sizeof(uapi.BtfInfo) == 32
        assert raw.btf_size == len(data) and part.raw == data[:10]
    with pytest.raises(OSError) as e:
        Handle.from_id(info.id, kernel=kernel)
    assert e.value.errno == E.ENOENT


@pytest.mark.parametrize("profile", ["5.10", "5.15", "6.0"])
def test_new_kinds_per_profile(profile: str) -> None:
    """A kernel without a kind refuses it as an unknown kind (EINVAL), as the probes
    find: FLOAT from 5.13, DECL_TAG 5.16, TYPE_TAG 5.17, ENUM64 6.0."""
    k = model(profile)
    for key, blob in probe.BTF_KIND_PROBES.items():
        has = k.profile.has(key)
        assert probe.check(k, key) is has
        if has:
            Handle.load(raw_btf(*blob), kernel=k).close()
        else:
            with pytest.raises(VerifierError, match="Invalid kind") as e:
                Handle.load(raw_btf(*blob), kernel=k)
            assert e.value.errno == E.EINVAL


# --- PROG_LOAD with func_info and line_info ----------------------------------------------

STRINGS = b"\0int\0main\0sub\0file.c\0return 1;\0"
OFF = {n: STRINGS.index(n.encode() + b"\0") for n in ("main", "sub", "file.c", "return 1;")}
#: [1] int, [2] int (void), [3] FUNC main (global), [4] FUNC sub (static)
FUNCS = raw_btf(INT + btf_type(0, 13, 0, 1) + btf_type(OFF["main"], 12, 1, 2)
                + btf_type(OFF["sub"], 12, 0, 2), STRINGS)
ONE = asm.assemble(asm.return_program(1))
#: main calls sub (insn 2), which returns 1
TWO = bytes.fromhex("8510000001000000" "9500000000000000" "b700000001000000"
                    "9500000000000000")
#: an ld_imm64 (its second half is insn 1)
LD = bytes.fromhex("1800000000000000" "0000000000000000" "b700000001000000"
                   "9500000000000000")
F, L = OFF["file.c"], OFF["return 1;"]


def fi(*recs: tuple[int, int], size: int = 8, tail: bytes = b"") -> bytes:
    return b"".join(struct.pack("<II", *r) + bytes(size - 8 - len(tail)) + tail for r in recs)


def li(*recs: tuple[int, int, int, int], size: int = 16) -> bytes:
    return b"".join(struct.pack("<IIII", *r) + bytes(size - 16) for r in recs)


#: name -> (code, func_info, func rec size, line_info, line rec size, errno, log line, btf fd);
#: btf fd None: the BTF; an int: that fd.  Measured on 6.18.
LOADS: dict[str, tuple[bytes, bytes, int, bytes, int, int, str, int | None]] = {
    "func_info": (ONE, fi((0, 3)), 8, b"", 16, 0, "", None),
    "bad btf fd": (ONE, fi((0, 3)), 8, b"", 16, E.EBADF, "", 999),
    "btf fd unused": (ONE, b"", 8, b"", 16, 0, "", 999),
    "rec size 4": (ONE, fi((0, 3)), 4, b"", 16, E.EINVAL, "invalid func info rec size 4", None),
    "rec size 10": (ONE, fi((0, 3), size=10), 10, b"", 16, E.EINVAL,
                    "invalid func info rec size 10", None),
    "rec size 256": (ONE, fi((0, 3), size=256), 256, b"", 16, E.EINVAL,
                     "invalid func info rec size 256", None),
    "rec size 12": (ONE, fi((0, 3), size=12), 12, b"", 16, 0, "", None),
    "nonzero tail": (ONE, fi((0, 3), size=12, tail=b"\1\0\0\0"), 12, b"", 16, E.E2BIG,
                     "nonzero tailing record in func info", None),
    "first at 1": (ONE, fi((1, 3)), 8, b"", 16, E.EINVAL,
                   "nonzero insn_off 1 for the first func info record", None),
    "type int": (ONE, fi((0, 1)), 8, b"", 16, E.EINVAL, "invalid type id 1 in func info", None),
    "type proto": (ONE, fi((0, 2)), 8, b"", 16, E.EINVAL, "invalid type id 2 in func info", None),
    "type 99": (ONE, fi((0, 99)), 8, b"", 16, E.EINVAL, "invalid type id 99 in func info", None),
    "too many": (ONE, fi((0, 3), (1, 4)), 8, b"", 16, E.EINVAL,
                 "number of funcs in func_info doesn't match number of subprogs", None),
    "subprog": (TWO, fi((0, 3), (2, 4)), 8, b"", 16, 0, "", None),
    "subprog without func_info": (TWO, b"", 8, b"", 16, 0, "", None),
    "subprog missing": (TWO, fi((0, 3)), 8, b"", 16, E.EINVAL,
                        "number of funcs in func_info doesn't match number of subprogs", None),
    "subprog elsewhere": (TWO, fi((0, 3), (3, 4)), 8, b"", 16, E.EINVAL,
                          "func_info BTF section doesn't match subprog layout in BPF program",
                          None),
    "same offset": (TWO, fi((0, 3), (0, 4)), 8, b"", 16, E.EINVAL,
                    "same or smaller insn offset (0) than previous func info record (0)", None),
    "line_info": (ONE, fi((0, 3)), 8, li((0, F, L, 1 << 10 | 5)), 16, 0, "", None),
    "line_info alone": (ONE, b"", 8, li((0, F, L, 0)), 16, 0, "", None),
    "line at 1": (ONE, fi((0, 3)), 8, li((1, F, L, 0)), 16, E.EINVAL,
                  "missing bpf_line_info for func#0", None),
    "lines": (ONE, fi((0, 3)), 8, li((0, F, L, 0), (1, F, L, 0)), 16, 0, "", None),
    "line twice": (ONE, fi((0, 3)), 8, li((0, F, L, 0), (0, F, L, 0)), 16, E.EINVAL,
                   "Invalid line_info[1].insn_off:0 (prev_offset:0 prog->len:2)", None),
    "line past the end": (ONE, fi((0, 3)), 8, li((0, F, L, 0), (2, F, L, 0)), 16, E.EINVAL,
                          "Invalid line_info[1].insn_off:2 (prev_offset:0 prog->len:2)", None),
    "line string": (ONE, fi((0, 3)), 8, li((0, F, 999, 0)), 16, E.EINVAL,
                    "Invalid line_info[0].line_off or .file_name_off", None),
    "file string": (ONE, fi((0, 3)), 8, li((0, 999, L, 0)), 16, E.EINVAL,
                    "Invalid line_info[0].line_off or .file_name_off", None),
    "line rec size 8": (ONE, fi((0, 3)), 8, li((0, F, L, 0)), 8, E.EINVAL, "", None),
    "line rec size 20": (ONE, fi((0, 3)), 8, li((0, F, L, 0), size=20), 20, 0, "", None),
    "subprog without a line": (TWO, fi((0, 3), (2, 4)), 8, li((0, F, L, 0)), 16, E.EINVAL,
                               "missing bpf_line_info for 1 funcs starting from func#1", None),
    "subprog lines": (TWO, fi((0, 3), (2, 4)), 8, li((0, F, L, 0), (2, F, L, 0)), 16, 0, "",
                      None),
    "line in an ld_imm64": (LD, fi((0, 3)), 8, li((0, F, L, 0), (1, F, L, 0)), 16, E.EINVAL,
                            "Invalid insn code at line_info[1].insn_off", None),
}


def prog_load(kernel: Kernel, btf_fd: int, code: bytes, func_info: bytes, frec: int,
              line_info: bytes, lrec: int) -> tuple[int, str, uapi.ProgLoadAttr]:
    """PROG_LOAD of ``code`` (CGROUP_SKB egress) with those records: (errno or 0, the
    log's last line before "processed ...", the attr as the kernel left it)."""
    keep = [ctypes.create_string_buffer(b, len(b) or 1) for b in (code, func_info, line_info)]
    lic, log = _sys.c_str("GPL"), ctypes.create_string_buffer(1 << 16)
    attr = uapi.ProgLoadAttr(
        prog_type=ProgType.CGROUP_SKB, insn_cnt=len(code) // 8,
        insns=ctypes.addressof(keep[0]), license=ctypes.addressof(lic),
        expected_attach_type=EGRESS, prog_btf_fd=btf_fd, log_level=1, log_size=len(log),
        log_buf=ctypes.addressof(log),
        func_info=ctypes.addressof(keep[1]) if func_info else 0,
        func_info_cnt=len(func_info) // frec, func_info_rec_size=frec if func_info else 0,
        line_info=ctypes.addressof(keep[2]) if line_info else 0,
        line_info_cnt=len(line_info) // lrec, line_info_rec_size=lrec if line_info else 0)
    try:
        kernel.close(kernel.bpf(Cmd.PROG_LOAD, attr))
        err = 0
    except OSError as e:
        err = e.errno or 0
    # (some kernel messages lack their newline: "processed ..." then follows on the line)
    lines = log.value.decode().split("processed ")[0].strip().splitlines()
    return err, lines[-1] if lines else "", attr


#: Debian 6.1 counts the functions before it looks at the record size (6.12 and 6.18:
#: after); the model checks in 6.18's order.
OLDER_ORDER = {"number of funcs in func_info doesn't match number of subprogs":
               "invalid func info rec size 4"}


@pytest.mark.parametrize("case", list(LOADS))
def test_func_and_line_info(kernel: Kernel, case: str) -> None:
    code, func_info, frec, line_info, lrec, want, line, fd = LOADS[case]
    with Handle.load(FUNCS, kernel=kernel) as h:
        err, said, attr = prog_load(kernel, h.fd if fd is None else fd, code, func_info,
                                    frec, line_info, lrec)
    if kernel.name == "host" and OLDER_ORDER.get(said) == line:
        said = line
    assert (err, said if line else "") == (want, line)
    if want == E.E2BIG:  # the kernel writes back the record size it knows
        assert attr.func_info_rec_size == 8


def test_func_info_pointer(kernel: Kernel) -> None:
    """func_info the kernel cannot read: EFAULT; a program's BTF lives while it does."""
    with Handle.load(FUNCS, kernel=kernel) as h:
        lic, code = _sys.c_str("GPL"), ctypes.create_string_buffer(ONE, len(ONE))
        with pytest.raises(OSError) as e:
            _sys.prog_load(kernel, prog_type=ProgType.CGROUP_SKB, insns=code, insn_cnt=2,
                           license=lic, expected_attach_type=EGRESS, prog_btf_fd=h.fd,
                           func_info_cnt=1, func_info_rec_size=8)
        assert e.value.errno == E.EFAULT
        prog = Program.load(ONE, ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
                            options=LoadOptions(btf=h, func_info=fi((0, 3))), kernel=kernel)
        btf_id = h.id
    with prog, Handle.from_id(btf_id, kernel=kernel) as again:  # held by the program
        assert again.data() == FUNCS


def test_load_options_are_checked() -> None:
    with pytest.raises(OSError) as e:
        LoadOptions(func_info=fi((0, 3)))
    assert e.value.errno == E.EINVAL and "LoadOptions(btf=" in str(e.value)
    with pytest.raises(OSError):
        LoadOptions(func_info=b"123", btf=None)
    with pytest.raises(TypeError):
        LoadOptions(line_info="x")  # type: ignore[arg-type]


# --- the C source in the verifier's log (host) -------------------------------------------


def sections(name: str) -> Iterator[tuple[str, bytes]]:
    from bpfc import compile_c

    with open(compile_c(name), "rb") as f:
        for s in ELFFile(f).iter_sections():
            yield s.name, s.data()


@host_only
def test_verifier_log_quotes_the_source(kernel: Kernel) -> None:
    """tests/bpf/kernel_reject.c reads the packet without a bounds check: loaded with its
    BTF, func_info and line_info (from .BTF.ext), the host's verifier log quotes the C
    line, and so does the error's message."""
    elf = dict(sections("kernel_reject"))
    spec = Spec.from_bytes(elf[".BTF"])
    spec.fixup_datasecs({"license": len(elf["license"])}, {"LICENSE": 0})
    ext = Ext.from_bytes(elf[".BTF.ext"], spec)
    section = "cgroup_skb/egress"
    with Handle.load(spec.to_bytes(), kernel=kernel) as h, pytest.raises(VerifierError) as e:
        Program.load(elf[section], ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
                     options=LoadOptions(btf=h, func_info=func_info_bytes(ext.func_info[section]),
                                         line_info=line_info_bytes(ext.line_info[section])),
                     kernel=kernel)
    source = "return data[20] & 1; /* no bounds check against skb->data_end */"
    assert e.value.errno == E.EACCES
    lines = e.value.log.splitlines()
    # 6.1 quotes the line without " @ FILE:LINE"
    where = "kernel_reject.c:11" if f"; {source} @ kernel_reject.c:11" in lines else ""
    assert where or f"; {source}" in lines, lines
    assert f"at {where}: {source}".replace("at : ", "at: ") in str(e.value)


def test_prog_info_btf(kernel: Kernel) -> None:
    """bpf_prog_info of programs with and without BTF: btf_id, the record counts, the
    kernel's record sizes (always), a JITed function per subprogram."""
    with Handle.load(FUNCS, kernel=kernel) as h:
        for code, options, want in (
                (ONE, None, (0, 0, 0, 1)), (TWO, None, (0, 0, 0, 2)),
                (ONE, LoadOptions(btf=h, func_info=fi((0, 3))), (h.id, 1, 0, 1)),
                (TWO, LoadOptions(btf=h, func_info=fi((0, 3), (2, 4)),
                                  line_info=li((0, F, L, 0), (2, F, L, 0))), (h.id, 2, 2, 2))):
            with Program.load(code, ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
                              options=options, kernel=kernel) as prog:
                raw = uapi.ProgInfo()
                _sys.get_info(kernel, prog.fd, raw)
                assert (raw.btf_id, raw.nr_func_info, raw.nr_line_info,
                        raw.nr_jited_ksyms) == want
                assert (raw.func_info_rec_size, raw.line_info_rec_size,
                        raw.jited_line_info_rec_size) == (8, 16, 8)
                assert raw.nr_jited_line_info == raw.nr_line_info
                assert raw.nr_jited_func_lens == raw.nr_jited_ksyms


def test_btf_load_needs_cap_bpf(kernel: Kernel) -> None:
    """BTF_LOAD without CAP_BPF: EPERM, raised as MissingPrivilege naming CAP_BPF."""
    def load(k: Kernel) -> None:
        with pytest.raises(MissingPrivilege) as e:
            Handle.load(FUNCS, kernel=k)
        assert e.value.errno == E.EPERM and e.value.capability == "CAP_BPF"

    kernel.run_restricted(set(), load)
