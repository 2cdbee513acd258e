"""The model's BTF at the ABI level: what depends on the profile (signed ENUMs with
ENUM64, 6.0), BTF objects' lifetime through the maps and programs that use them, and the
ids they share with nothing else."""

from __future__ import annotations

import errno

import pytest

from cgbpf import Map, MapType, Program, ProgType, VerifierError, asm, model
from cgbpf.btf.handle import Handle
from cgbpf.map import MapOptions
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType, btf_type, raw_btf

SIGNED_ENUM = raw_btf(btf_type(1, 6, 1, 4, 3, -1, kflag=True), b"\0e\0A\0")
INT = raw_btf(btf_type(1, 1, 0, 4, 1 << 24 | 32), b"\0int\0")


@pytest.mark.parametrize(("profile", "accepted"), [("5.15", False), ("6.0", True)])
def test_signed_enum(profile: str, accepted: bool) -> None:
    """ENUM's kind_flag (signed values) came with ENUM64 (6.0); before, it is refused."""
    k = model(profile)
    if accepted:
        Handle.load(SIGNED_ENUM, kernel=k).close()
        return
    with pytest.raises(VerifierError, match="Invalid btf_info kind_flag") as e:
        Handle.load(SIGNED_ENUM, kernel=k)
    assert e.value.errno == errno.EINVAL


def test_btf_lives_while_used(k: ModelKernel) -> None:
    """A map holds its BTF: the BTF's id stays openable after its last fd closes, until
    the map goes; BTF ids are their own space."""
    h = Handle.load(INT, kernel=k)
    m = Map.create(MapType.ARRAY, key_size=4, value_size=4, max_entries=1, kernel=k,
                   options=MapOptions(btf=h, btf_key_type_id=1, btf_value_type_id=1))
    btf_id = h.id
    h.close()
    with Handle.from_id(btf_id, kernel=k) as again:
        assert again.data() == INT
    prog = Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                        expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=k)
    assert btf_id == m.id == prog.id == 1  # three id spaces
    m.close()
    prog.close()
    with pytest.raises(OSError) as e:
        Handle.from_id(btf_id, kernel=k)
    assert e.value.errno == errno.ENOENT
