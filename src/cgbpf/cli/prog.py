"""``cgbpf prog``: load a clang-compiled object and pin its programs (as ``bpftool prog
loadall``), show loaded programs."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import Any

from ..errors import BpfError
from ..kernel import Kernel
from ..program import Program, ProgramInfo, programs
from .link import pins
from .names import Words, open_prog
from .output import Output, verb_group

PROG = "id ID | pinned PATH | name NAME"
USAGE = {
    "load": "cgbpf prog load OBJ PINDIR",
    "show": f"cgbpf prog show [{PROG}]",
}
EXAMPLES = """examples:
  cgbpf prog load count.o /sys/fs/bpf/count      # pins /sys/fs/bpf/count/<program>
  cgbpf prog show name count
  cgbpf -j prog show"""


def register(sub: Any, *, full: bool = True, verb: str | None = None) -> None:
    verb_group(sub, "prog", "load an object's programs, show programs", __doc__ or "",
               USAGE, EXAMPLES,
               (("load", load), ("show", show)), full=full, verb=verb)


def load(k: Kernel, w: Words, o: Output) -> int:
    obj, pindir = w.take("OBJ"), w.take("PINDIR")
    w.done()
    from ..collection import Collection  # the loader (pyelftools) only for this command

    made_dir = False
    try:
        k.mkdir(pindir)
        made_dir = True
    except FileExistsError:
        pass
    except OSError as e:
        raise BpfError(e.errno or errno.EIO, f"pin directory {pindir}", command="mkdir",
                       hint="PINDIR goes on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)"
                       ) from e
    pinned: list[Program] = []
    try:
        with Collection.load(obj, k) as coll:
            for name, prog in coll.programs.items():
                prog.pin(os.path.join(pindir, name))
                pinned.append(prog)
            done = [(name, p.id) for name, p in coll.programs.items()]
    except BaseException:
        for prog in pinned:
            with contextlib.suppress(BpfError):
                prog.unpin()
        if made_dir:
            with contextlib.suppress(OSError):
                k.rmdir(pindir)
        raise
    o.done("\n".join(f"program {pid} ({name}) pinned at {os.path.join(pindir, name)}"
                     for name, pid in done))
    return 0


def _boot_offset() -> float:
    """Wall clock minus boot clock: load times are ns since boot."""
    try:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return 0.0


def prog_json(i: ProgramInfo, pinned: list[str], boot: float) -> dict[str, Any]:
    return {"id": i.id, "type": getattr(i.type, "name", str(i.type)).lower(),
            "name": i.name, "tag": i.tag, "loaded_at": int(boot + i.load_time / 1e9),
            "uid": i.created_by_uid, "bytes_xlated": i.insns * 8, "jited": i.jited,
            "map_ids": list(i.map_ids), "pinned": pinned, "run_cnt": i.run_cnt,
            "run_time_ns": i.run_time_ns, "verified_insns": i.verified_insns}


def show(k: Kernel, w: Words, o: Output) -> int:
    one: ProgramInfo | None = None
    if w:
        ref = w.ref("PROG", ("id", "pinned", "name"))
        w.done()
        with open_prog(k, ref) as p:
            one = p.info()
    infos = [one] if one is not None else list(programs(kernel=k))
    pinned = pins(k, Program) if infos else {}
    boot = _boot_offset()
    if o.json:
        docs = [prog_json(i, pinned.get(i.id, []), boot) for i in infos]
        o.emit(docs[0] if one is not None else docs)
        return 0
    for i in infos:
        d = prog_json(i, pinned.get(i.id, []), boot)
        o.line(f"{o.bold(str(i.id))}: {d['type']}  name {i.name}  tag {i.tag}")
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(d["loaded_at"]))
        o.line(f"\tloaded_at {when}  uid {i.created_by_uid}")
        o.line(f"\txlated {d['bytes_xlated']}B  {'jited' if i.jited else 'not jited'}"
               + (f"  map_ids {','.join(map(str, i.map_ids))}" if i.map_ids else ""))
        for p in d["pinned"]:
            o.line(f"\tpinned {p}")
    return 0
