"""BTF types: one frozen dataclass per kind (``include/uapi/linux/btf.h``).  Types refer to
each other by type id, an index into :attr:`Spec.types <cgbpf.btf.Spec.types>`; each
docstring says the first Linux release whose kernel accepts the kind."""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from typing import ClassVar


class Kind(enum.IntEnum):
    """``BTF_KIND_*``: bits 24-28 of a type's ``info``."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: ``BTF_INT_*`` encoding bits of an :class:`Int`.
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
#: Linkage of a :class:`Func` (``BTF_FUNC_*``) and of a :class:`Var` (``BTF_VAR_*``).
STATIC, GLOBAL, EXTERN = 0, 1, 2


@dataclass(frozen=True)
class Type:
    """A BTF type; ``kind`` is its ``BTF_KIND_*`` number."""

    kind: ClassVar[Kind] = Kind.UNKN
    name: str


@dataclass(frozen=True)
class Void(Type):
    """Type id 0: ``void``, never in the type section."""

    name: str = ""


@dataclass(frozen=True)
class Int(Type):
    """An integer of ``size`` bytes, ``bits`` of which are used from bit ``offset``."""

    kind = Kind.INT
    size: int
    offset: int
    bits: int
    encoding: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)

    @property
    def char(self) -> bool:
        return bool(self.encoding & INT_CHAR)

    @property
    def bool(self) -> builtins.bool:
        return bool(self.encoding & INT_BOOL)


@dataclass(frozen=True)
class Ptr(Type):
    """A pointer to ``type_id`` (8 bytes on BPF)."""

    kind = Kind.PTR
    type_id: int


@dataclass(frozen=True)
class Array(Type):
    """``nelems`` elements of ``type_id``, indexed by ``index_type_id``."""

    kind = Kind.ARRAY
    type_id: int
    index_type_id: int
    nelems: int


@dataclass(frozen=True)
class Member:
    """A struct or union member; ``bitfield_size`` is 0 unless the owner's ``kind_flag``."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True)
class Composite(Type):
    """A :class:`Struct` or :class:`Union`; ``kind_flag``: members carry their bitfield
    sizes (Linux 5.0)."""

    size: int
    members: tuple[Member, ...]
    kind_flag: bool = False


@dataclass(frozen=True)
class Struct(Composite):
    """A struct."""

    kind = Kind.STRUCT


@dataclass(frozen=True)
class Union(Composite):
    """A union: its members all start at 0."""

    kind = Kind.UNION


@dataclass(frozen=True)
class Enumeration(Type):
    """An :class:`Enum` or :class:`Enum64`; ``signed`` is the kind flag (Linux 6.0)."""

    size: int
    signed: bool
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Enum(Enumeration):
    """An enum of 32-bit values."""

    kind = Kind.ENUM


@dataclass(frozen=True)
class Enum64(Enumeration):
    """An enum of 64-bit values (Linux 6.0)."""

    kind = Kind.ENUM64


@dataclass(frozen=True)
class Fwd(Type):
    """A forward declaration of a struct, or a union if ``union``."""

    kind = Kind.FWD
    union: bool


@dataclass(frozen=True)
class Modifier(Type):
    """A type that names or qualifies ``type_id``: what :meth:`Spec.resolve` goes through."""

    type_id: int


@dataclass(frozen=True)
class Typedef(Modifier):
    """``typedef type_id name``."""

    kind = Kind.TYPEDEF


@dataclass(frozen=True)
class Volatile(Modifier):
    """``volatile type_id``."""

    kind = Kind.VOLATILE


@dataclass(frozen=True)
class Const(Modifier):
    """``const type_id``."""

    kind = Kind.CONST


@dataclass(frozen=True)
class Restrict(Modifier):
    """``restrict type_id``."""

    kind = Kind.RESTRICT


@dataclass(frozen=True)
class TypeTag(Modifier):
    """``__attribute__((btf_type_tag(name)))`` on a pointee (Linux 5.17)."""

    kind = Kind.TYPE_TAG
    kind_flag: bool = False


@dataclass(frozen=True)
class Func(Type):
    """A function: ``type_id`` is its :class:`FuncProto`; global linkage needs Linux 5.6."""

    kind = Kind.FUNC
    type_id: int
    linkage: int


@dataclass(frozen=True)
class FuncProto(Type):
    """A function's signature; a last param ``("", 0)`` is ``...``."""

    kind = Kind.FUNC_PROTO
    return_type_id: int
    params: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Var(Type):
    """A global variable (Linux 5.2)."""

    kind = Kind.VAR
    type_id: int
    linkage: int


@dataclass(frozen=True)
class VarSecinfo:
    """A variable in a :class:`Datasec`: its :class:`Var`, byte offset and size."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class Datasec(Type):
    """An ELF data section (``.bss``, ``.data``, ``.rodata``, ``.maps``...; Linux 5.2)."""

    kind = Kind.DATASEC
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True)
class Float(Type):
    """A floating-point type of ``size`` bytes (Linux 5.13)."""

    kind = Kind.FLOAT
    size: int


@dataclass(frozen=True)
class DeclTag(Type):
    """``__attribute__((btf_decl_tag(name)))`` on ``type_id``, or on its member or param
    ``component_idx`` (-1: the declaration itself; Linux 5.16)."""

    kind = Kind.DECL_TAG
    type_id: int
    component_idx: int
    kind_flag: bool = False

