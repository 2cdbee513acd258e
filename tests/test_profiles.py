"""Kernel-version profiles seen from the library (KERNEL-SEMANTICS.md §16, §19).

* The probes conclude on each model profile what they would on a real kernel with those
  features: one explicit table, written from §16/§19, not from the profiles' feature sets.
* A missing feature raises ``NotSupported`` naming it and its first kernel; the same call
  works on a profile that has it.
* The characteristic requests of ``tests/kernels/characterize.py`` give the same results
  on the host (6.18) and on ``model:6.18``.  (Older real kernels: tests/kernels/README.md.)
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import cgbpf
from cgbpf import HEAD, AttachType, Cgroup, NotSupported, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgbpf.kernel.probe import (
    LINK_DETACH,
    LINK_INFO,
    LINKS,
    ORDERING,
    PREORDER_ATTACH,
    PREORDER_LINK,
    REVISION,
)
from cgbpf.model import Profile
from cgtest import need_host

PREFIX = "cgbpf-test"
EGRESS = AttachType.CGROUP_INET_EGRESS

# --- probes ------------------------------------------------------------------------------

COLUMNS = (LINKS, LINK_INFO, LINK_DETACH, PREORDER_ATTACH, PREORDER_LINK, ORDERING, REVISION)
PROFILES: dict[str, Profile] = {v: Profile.of(v) for v in (
    "5.6", "5.7", "5.8", "5.9", "6.0", "6.1", "6.6", "6.12.100", "6.15", "6.17", "6.18")}
PROFILES |= {
    "6.18-preorder_link": Profile.of("6.18").without("preorder_link"),
    "6.18-mprog_cgroup": Profile.of("6.18").without("mprog_cgroup"),
    "6.1+preorder_attach": Profile.of("6.1").with_("preorder_attach"),
    # §19: Debian 6.12.117 = 6.12.100 + PREORDER for links + the mprog API: as 6.18
    "6.12.117": Profile.of("6.12.100").with_("preorder_link", "mprog_cgroup"),
}
EXPECTED: dict[str, tuple[int, ...]] = {
    #                      links info detach pre-attach pre-link ordering revision
    "5.6":                 (0,    0,   0,     0,         0,       0,       0),
    "5.7":                 (1,    0,   0,     0,         0,       0,       0),
    "5.8":                 (1,    1,   0,     0,         0,       0,       0),
    "5.9":                 (1,    1,   1,     0,         0,       0,       0),
    "6.0":                 (1,    1,   1,     0,         0,       0,       0),
    "6.1":                 (1,    1,   1,     0,         0,       0,       0),
    "6.6":                 (1,    1,   1,     0,         0,       0,       0),
    "6.12.100":            (1,    1,   1,     1,         0,       0,       0),
    "6.15":                (1,    1,   1,     1,         0,       0,       0),
    "6.17":                (1,    1,   1,     1,         1,       1,       1),
    "6.18":                (1,    1,   1,     1,         1,       1,       1),
    "6.18-preorder_link":  (1,    1,   1,     1,         0,       1,       1),
    "6.18-mprog_cgroup":   (1,    1,   1,     1,         1,       0,       0),
    "6.1+preorder_attach": (1,    1,   1,     1,         0,       0,       0),
    "6.12.117":            (1,    1,   1,     1,         1,       1,       1),
}


def test_table_covers_every_probe_and_profile() -> None:
    assert set(COLUMNS) == set(probe.FEATURES)
    assert set(EXPECTED) == set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_probes_on_profile(name: str) -> None:
    k = cgbpf.model(PROFILES[name])
    found = {key: probe.supported(k, key) for key in COLUMNS}
    assert found == {key: bool(v) for key, v in zip(COLUMNS, EXPECTED[name], strict=True)}


# --- NotSupported ------------------------------------------------------------------------

Use = Callable[[Cgroup, Program], object]


def _link_then(fn: Callable[[cgbpf.Link], object]) -> Use:
    def use(cg: Cgroup, prog: Program) -> None:
        with cg.link(prog) as link:
            fn(link)
    return use


def _attach_detach(cg: Cgroup, prog: Program, **detach: int) -> None:
    cg.attach(prog)
    cg.detach(prog, **detach)


#: (what, the call, a profile without the feature, one with it, the feature's first kernel)
USES: list[tuple[str, Use, str, str, str, str]] = [
    ("link", lambda cg, p: cg.link(p).close(), LINKS, "5.6", "5.7", "5.7"),
    ("link.info", _link_then(lambda lk: lk.info()), LINK_INFO, "5.7", "5.8", "5.8"),
    ("links()", lambda cg, p: list(cgbpf.links(kernel=cg.kernel)), LINK_INFO, "5.7", "5.8",
     "5.8"),
    ("link.detach", _link_then(lambda lk: lk.detach()), LINK_DETACH, "5.8", "5.9", "5.9"),
    ("attach preorder", lambda cg, p: cg.attach(p, preorder=True), PREORDER_ATTACH, "6.6",
     "6.12.100", "6.15"),
    ("link preorder", lambda cg, p: cg.link(p, preorder=True).close(), PREORDER_LINK, "6.1",
     "6.17", "6.17"),
    ("link preorder (backport)", lambda cg, p: cg.link(p, preorder=True).close(),
     PREORDER_LINK, "6.12.100", "6.12.117", "6.17"),
    ("link before=HEAD", lambda cg, p: cg.link(p, before=HEAD).close(), ORDERING, "6.15",
     "6.17", "6.17"),
    ("attach after=TAIL", lambda cg, p: cg.attach(p, after=cgbpf.TAIL), ORDERING, "6.12.100",
     "6.18", "6.17"),
    ("link expected_revision", lambda cg, p: cg.link(p, expected_revision=1).close(),
     REVISION, "6.6", "6.17", "6.17"),
    ("detach expected_revision", lambda cg, p: _attach_detach(cg, p, expected_revision=2),
     REVISION, "6.1+preorder_attach", "6.18", "6.17"),
]


def _use(use: Use, profile: str) -> None:
    k = cgbpf.model(PROFILES[profile])
    with Scratch(k, PREFIX) as s, Program.load(
            asm.return_program(1), ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
            name="ok", kernel=k) as prog:
        use(s.cgroup("a"), prog)


@pytest.mark.parametrize(("use", "feature", "without", "with_", "since"),
                         [u[1:] for u in USES], ids=[u[0] for u in USES])
def test_missing_feature_raises_not_supported(use: Use, feature: str, without: str,
                                              with_: str, since: str) -> None:
    with pytest.raises(NotSupported) as e:
        _use(use, without)
    assert (e.value.feature, e.value.since) == (probe.FEATURES[feature].name, since)
    assert probe.FEATURES[feature].name in str(e.value) and since in str(e.value)
    _use(use, with_)


# --- host vs model: characteristic requests ----------------------------------------------


def _load_characterize() -> ModuleType:
    """tests/kernels/characterize.py (a script, not a package module)."""
    path = Path(__file__).parent / "kernels" / "characterize.py"
    spec = importlib.util.spec_from_file_location("characterize", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


characterize = _load_characterize()

@pytest.fixture(scope="module")
def both() -> tuple[dict[str, str], dict[str, str]]:
    """(host results, model:6.18 results); the host's scratch cgroups are gone after."""
    host: Kernel = need_host()
    real = dict(characterize.characterize(host, PREFIX))
    assert glob.glob(os.path.join(host.cgroup_root, f"{PREFIX}-{os.getpid()}-*")) == []
    return real, dict(characterize.characterize(cgbpf.model("6.18"), PREFIX))


def test_host_and_model_agree(both: tuple[dict[str, str], dict[str, str]]) -> None:
    real, model = both
    assert len(real) >= 30 and list(real) == list(model)
    assert {n: (real[n], model[n]) for n in real if real[n] != model[n]} == {}
