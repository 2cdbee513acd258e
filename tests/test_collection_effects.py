"""Programs from C, run for real: linked to a scratch cgroup, exercised by a child process
in it (UDP on loopback, socket(), connect(), a sysctl read), their verdicts and counters
checked through ``coll.globals`` and their maps.  The UDP ones run on the model too (a
model process sends, its VM runs the programs); TCP and plain socket() calls are host
only (the model's events are UDP)."""

from __future__ import annotations

import socket
import struct

from bpfc import compile_c
from cgbpf import AttachType
from cgbpf._scratch import Scratch
from cgbpf.collection import Collection, CollectionSpec
from cgbpf.kernel import Kernel
from cgbpf.testing import in_cgroup, send_from
from cgtest import host_only


def test_counters_data_subprograms_and_a_hash_map(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("udp")
    with Collection.load(compile_c("globals"), kernel) as coll, \
            cg.link(coll.programs["count_egress"]), cg.link(coll.programs["count_ingress"]):
        assert send_from(cg.path, 3, kernel=kernel) == 3
        g = coll.globals
        # weigh() (global subprogram) adds step + bias + 1 = 3 per packet
        assert (g["egress_packets"], g["ingress_packets"], g["weighed"]) == (3, 3, 9)
        # record() (static subprogram) counts packets by length in the HASH map: each
        # datagram is one 33-byte IP packet (20 + 8 + "cgbpf"), seen leaving and arriving
        sizes = {struct.unpack("<I", k)[0]: struct.unpack("<Q", v)[0]
                 for k, v in coll.maps["sizes"].items()}
        assert sizes == {33: 6}
        g["step"] = 10  # .data assigned after load: the next packet weighs 10
        g["egress_packets"] = 100
        assert send_from(cg.path, 1, kernel=kernel) == 1
        assert (g["egress_packets"], g["weighed"]) == (101, 19)


def test_a_rodata_constant_set_before_load_changes_the_verdict(kernel: Kernel,
                                                                scratch: Scratch) -> None:
    cg = scratch.cgroup("deny")
    spec = CollectionSpec.read(compile_c("globals"))
    spec.constants({"allow": 0, "bias": 5})
    with spec.load(kernel) as coll, cg.link(coll.programs["count_egress"]):
        assert send_from(cg.path, 2, kernel=kernel) == 0  # sendto: EPERM
        assert coll.globals["egress_packets"] == 2
        assert coll.globals["weighed"] == 2 * (3 + 5 + 1)
        assert (coll.globals["allow"], coll.globals["bias"]) == (0, 5)
    with Collection.load(compile_c("globals"), kernel) as coll, \
            cg.link(coll.programs["count_egress"]):
        assert send_from(cg.path, 2, kernel=kernel) == 2  # the default, allow = 1


def _sockets() -> int:
    """In the child: a TCP and a UDP socket; 0 if both were made, 1 if UDP was refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM):
                return 0
        except PermissionError:
            return 1


@host_only
def test_sock_create_counts_and_refuses_socket(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("sock")
    with Collection.load(compile_c("sock_hooks"), kernel) as coll, \
            cg.link(coll.programs["sock_create"]) as link:
        assert link.info().attach_type == AttachType.CGROUP_INET_SOCK_CREATE
        assert in_cgroup(cg.path, _sockets) == 0
        assert coll.globals["created"] == 2
        coll.globals["deny_type"] = socket.SOCK_DGRAM
        assert in_cgroup(cg.path, _sockets) == 1
        assert coll.globals["created"] == 4


@host_only
def test_connect4_counts_and_refuses_a_port(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("connect")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]

        def connect() -> int:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
                try:
                    c.connect(("127.0.0.1", port))
                except PermissionError:
                    return 1
            return 0

        with Collection.load(compile_c("sock_hooks"), kernel) as coll, \
                cg.link(coll.programs["connect4"]):
            assert in_cgroup(cg.path, connect) == 0
            assert (coll.globals["connects"], coll.globals["last_port"]) == (1, port)
            coll.globals["deny_port"] = port
            assert in_cgroup(cg.path, connect) == 1
            assert coll.globals["connects"] == 2


def _read_sysctl() -> int:
    """In the child: one read(2) of a sysctl; 0 if it worked, 1 if refused."""
    import os

    fd = os.open("/proc/sys/net/ipv4/ip_forward", os.O_RDONLY)
    try:
        os.read(fd, 16)
    except PermissionError:
        return 1
    finally:
        os.close(fd)
    return 0


@host_only
def test_sysctl_counts_and_refuses_a_read(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("sysctl")
    with Collection.load(compile_c("sock_hooks"), kernel) as coll, \
            cg.link(coll.programs["sysctl"]):
        assert in_cgroup(cg.path, _read_sysctl) == 0
        assert coll.globals["sysctls"] == 1
        coll.globals["deny_sysctl"] = 1
        assert in_cgroup(cg.path, _read_sysctl) == 1
        assert coll.globals["sysctls"] == 2


def test_static_variables_and_bpf_printk(kernel: Kernel, scratch: Scratch) -> None:
    """Function-local statics (clang names them ``func.name``: the BTF has dotted VAR
    names, which 6.1, 6.12 and 6.18 accept) and bpf_printk's format string; counted for
    real on the host."""
    spec = CollectionSpec.read(compile_c("statics"))
    where = {n: (v.section, v.offset) for n, v in spec.variables.items()}
    assert {n: s for n, (s, _) in where.items()} == {
        "seen": ".bss", "traced.calls": ".bss", "traced.____fmt": ".rodata"}
    assert {o for s, o in where.values() if s == ".bss"} == {0, 8}  # one at offset 8
    assert spec.variables["traced.____fmt"].value == b"cgbpf: packet of %u bytes\0"
    cg = scratch.cgroup("statics")
    with spec.load(kernel) as coll, cg.link(coll.programs["traced"]):
        assert send_from(cg.path, 2, kernel=kernel) == 2
        assert (coll.globals["traced.calls"], coll.globals["seen"]) == (2, 2 * 33)
