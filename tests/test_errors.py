"""Errors fit Python's habits: a BpfError is also the built-in OSError subclass of its
errno (``except FileNotFoundError`` catches "nothing is pinned there"), the kernel's
OSError stays as the cause, the specific subclasses stay, and errors pickle."""

from __future__ import annotations

import errno
import os
import pickle

import pytest

from cgbpf import BpfError, MissingPrivilege, NotSupported, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import EGRESS, load


def test_missing_pin_is_file_not_found(kernel: Kernel, scratch: Scratch) -> None:
    path = os.path.join(scratch.bpffs(), "nothing")
    with pytest.raises(FileNotFoundError) as e:
        Program.from_pin(path, kernel=kernel)
    assert isinstance(e.value, BpfError) and e.value.errno == errno.ENOENT
    assert e.value.command == "OBJ_GET" and "nothing is pinned" in str(e.value)
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOENT


def test_second_pin_is_file_exists(kernel: Kernel, scratch: Scratch) -> None:
    path = os.path.join(scratch.bpffs(), "p")
    with load(kernel) as prog:
        prog.pin(path)
        with pytest.raises(FileExistsError) as e:
            prog.pin(path)
        assert isinstance(e.value, BpfError) and e.value.command == "OBJ_PIN"
        kernel.unlink(path)


def test_missing_privilege_is_permission_error(kernel: Kernel) -> None:
    def child(k: Kernel) -> None:
        with pytest.raises(PermissionError) as e:
            Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                         expected_attach_type=EGRESS, kernel=k)
        assert isinstance(e.value, MissingPrivilege) and "CAP_BPF" in str(e.value)
    kernel.run_restricted(set(), child)


def test_classes_messages_and_pickling() -> None:
    cases = [BpfError(errno.ENOENT, "pin x", command="OBJ_GET", hint="h"),
             MissingPrivilege(errno.EPERM, "load", capability="CAP_BPF", command="PROG_LOAD"),
             NotSupported("links", "5.7"), BpfError(errno.ENOLINK, "link")]
    builtins = [FileNotFoundError, PermissionError, None, None]
    for e, builtin in zip(cases, builtins, strict=True):
        assert type(e).__name__ == type(e).__mro__[1 if builtin else 0].__name__
        if builtin:
            assert isinstance(e, builtin)
        again = pickle.loads(pickle.dumps(e))
        assert (type(again).__name__, again.errno, str(again)) == (
            type(e).__name__, e.errno, str(e))
        assert isinstance(again, type(e).__mro__[1] if builtin else type(e))
    assert str(cases[0]) == "OBJ_GET: pin x: ENOENT No such file or directory (h)"
    assert not isinstance(cases[3], FileNotFoundError) and cases[3].errno == errno.ENOLINK


def test_a_refused_pin_says_what_is_wrong_with_the_directory(kernel: Kernel,
                                                              scratch: Scratch) -> None:
    cases = {os.path.join(scratch.bpffs(), "nodir", "p"): "does not exist",
             os.path.join(scratch.mkdir("a"), "p"): "is not on a bpffs mount"}
    with load(kernel) as prog:
        for path, says in cases.items():
            with pytest.raises(BpfError) as e:
                prog.pin(path)
            assert e.value.command == "OBJ_PIN" and says in str(e.value), str(e.value)
            assert os.path.dirname(path) in str(e.value)
