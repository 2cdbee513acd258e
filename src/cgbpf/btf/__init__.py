"""BTF, the BPF Type Format, over bytes: the ``.BTF`` section (:class:`Spec`: types,
maps defined in BTF, fix-ups and sanitizing for older kernels) and ``.BTF.ext``
(:class:`Ext`: function, line and CO-RE records), as clang emits them and the kernel
checks them.  Nothing here calls the kernel; :class:`Handle` is BTF loaded into it."""

from typing import TYPE_CHECKING, Any

from .ext import (
    CORE_RELO_REC_SIZE,
    FUNC_INFO_REC_SIZE,
    LINE_INFO_REC_SIZE,
    CoreRelo,
    Ext,
    FuncInfo,
    LineInfo,
    func_info_bytes,
    line_info_bytes,
)
from .maps import PIN_BY_NAME, PIN_NONE, MapDef
from .spec import Spec
from .types import (
    EXTERN,
    GLOBAL,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    STATIC,
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Enumeration,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Modifier,
    Ptr,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)

if TYPE_CHECKING:
    from .handle import Handle

__all__ = [
    "CORE_RELO_REC_SIZE", "EXTERN", "FUNC_INFO_REC_SIZE", "GLOBAL", "INT_BOOL", "INT_CHAR",
    "INT_SIGNED", "LINE_INFO_REC_SIZE", "PIN_BY_NAME", "PIN_NONE", "STATIC", "Array",
    "Composite", "Const", "CoreRelo", "Datasec", "DeclTag", "Enum", "Enum64", "Enumeration",
    "Ext", "Float", "Func", "FuncInfo", "FuncProto", "Fwd", "Handle", "Int", "Kind",
    "LineInfo", "MapDef", "Member", "Modifier", "Ptr", "Restrict", "Spec", "Struct", "Type",
    "TypeTag", "Typedef", "Union", "Var", "VarSecinfo", "Void", "Volatile", "func_info_bytes",
    "line_info_bytes"]


def __getattr__(name: str) -> Any:
    """:class:`Handle` (BTF loaded into a kernel) is imported when first asked for."""
    if name == "Handle":
        from .handle import Handle

        return Handle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
