"""Kernel profiles and probes seen from the library (docs/kernel.md §16, §19).

* The probes conclude on each model profile what they would on a real kernel with those
  features: one explicit table for the library's features, written from §16/§19, not
  from the profiles' feature sets; and every probe recovers every named profile
  (``Profile.probe(model(P)) == P``), feature by feature.
* A probe that cannot tell (no privilege) says so and is not taken for "absent".
* A missing feature raises ``NotSupported`` naming it and its first kernel; the same call
  works on a profile that has it.
* The characteristic requests of ``tests/kernels/characterize.py`` give the same results
  on the host and on ``model("host")``, the model calibrated by probing the host.
  (Real older kernels: tests/kernels/README.md.)
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
from cgbpf import HEAD, AttachType, Cgroup, MissingPrivilege, NotSupported, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgbpf.kernel.probe import LINK_DETACH, LINK_INFO, LINKS, MPROG, PREORDER_ATTACH, PREORDER_LINK
from cgbpf.model import Profile
from cgbpf.model.profiles import NAMES
from cgtest import need_host

PREFIX = "cgbpf-test"
EGRESS = AttachType.CGROUP_INET_EGRESS

# --- probes ------------------------------------------------------------------------------

COLUMNS = (LINKS, LINK_INFO, LINK_DETACH, PREORDER_ATTACH, PREORDER_LINK, MPROG)
PROFILES: dict[str, Profile] = {v: Profile.of(v) for v in (
    "5.6", "5.7", "5.8", "5.9", "5.10", "5.15", "6.0", "6.1", "6.1.192", "6.6", "6.12",
    "6.12.100", "6.15", "6.17", "6.18")}
PROFILES |= {
    "6.18-preorder_link": Profile.of("6.18").without("preorder_link"),
    "6.18-mprog_cgroup": Profile.of("6.18").without("mprog_cgroup"),
    "6.1+preorder_attach": Profile.of("6.1").with_("preorder_attach"),
    # §19: Debian 6.12.117 = 6.12.100 + PREORDER for links + the mprog API: as 6.18
    "6.12.117": Profile.of("6.12.100").with_("preorder_link", "mprog_cgroup"),
}
EXPECTED: dict[str, tuple[int, ...]] = {
    #                      links info detach pre-attach pre-link mprog
    "5.6":                 (0,    0,   0,     0,         0,       0),
    "5.7":                 (1,    0,   0,     0,         0,       0),
    "5.8":                 (1,    1,   0,     0,         0,       0),
    "5.9":                 (1,    1,   1,     0,         0,       0),
    "5.10":                (1,    1,   1,     0,         0,       0),
    "5.15":                (1,    1,   1,     0,         0,       0),
    "6.0":                 (1,    1,   1,     0,         0,       0),
    "6.1":                 (1,    1,   1,     0,         0,       0),
    "6.1.192":             (1,    1,   1,     0,         0,       0),
    "6.6":                 (1,    1,   1,     0,         0,       0),
    "6.12":                (1,    1,   1,     0,         0,       0),
    "6.12.100":            (1,    1,   1,     1,         0,       0),
    "6.15":                (1,    1,   1,     1,         0,       0),
    "6.17":                (1,    1,   1,     1,         1,       1),
    "6.18":                (1,    1,   1,     1,         1,       1),
    "6.18-preorder_link":  (1,    1,   1,     1,         0,       1),
    "6.18-mprog_cgroup":   (1,    1,   1,     1,         1,       0),
    "6.1+preorder_attach": (1,    1,   1,     1,         0,       0),
    "6.12.117":            (1,    1,   1,     1,         1,       1),
}


def test_table_covers_every_profile() -> None:
    assert set(EXPECTED) == set(PROFILES) and set(NAMES) <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_probes_on_profile(name: str) -> None:
    k = cgbpf.model(PROFILES[name])
    found = {key: probe.check(k, key) for key in COLUMNS}
    assert found == {key: bool(v) for key, v in zip(COLUMNS, EXPECTED[name], strict=True)}


@pytest.mark.parametrize("name", NAMES)
def test_probing_a_model_recovers_its_profile(name: str) -> None:
    profile = Profile.of(name)
    assert Profile.diff(Profile.probe(cgbpf.model(profile)), profile) == {}


#: Features others are made of: no kernel lacks them alone (links and link info: the 5.6
#: and 5.7 profiles; the query attr grows past prog_attach_flags only with mprog_uapi).
FOUNDATIONS = (LINKS, LINK_INFO, "prog_attach_flags_query")


@pytest.mark.parametrize("key", [k for k in probe.FEATURES if k not in FOUNDATIONS])
def test_each_probe_sees_its_feature_alone(key: str) -> None:
    """Taking one feature out of 6.18 (with the backports 6.18 lacks) changes what that
    probe, and only that probe, concludes."""
    # without CAP_BPF (5.7) every detach needs CAP_NET_ADMIN: the detach backport cannot
    # be seen there (nor does it exist)
    backports = ("update_eat_check",) + (("detach_other_net_admin",) if key != "cap_bpf" else ())
    base = Profile.of("6.18").with_(*backports)
    changed = base.without(key)
    assert Profile.diff(Profile.probe(cgbpf.model(changed)), changed) == {}
    assert Profile.diff(base, changed) == {key: (True, False)}


@pytest.mark.parametrize("caps", [set(), {"CAP_BPF"}, {"CAP_NET_ADMIN"}],
                         ids=lambda c: "+".join(sorted(c)) or "none")
def test_a_refused_probe_cannot_tell(caps: set[str]) -> None:
    """Without privilege a probe says "could not tell" (None), never "absent": the
    library then tries the request and reports the kernel's real refusal."""
    k = cgbpf.model(caps=caps)
    found = probe.probe_all(k)
    assert False not in {v for key, v in found.items() if key != "update_eat_check"}
    unknown = [key for key, v in found.items() if v is None]
    assert unknown and all(probe.why(k, key) for key in unknown)
    with pytest.raises(PermissionError, match="could not probe"):
        Profile.probe(k)
    root = cgbpf.model()  # the same machine's root makes a cgroup and a program
    with Scratch(root, PREFIX) as s, Program.load(
            asm.return_program(1), ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
            name="ok", kernel=root) as prog:
        path = s.mkdir("a")
        user = root.process(caps=caps, fork=True)  # inherits the program's fd
        try:
            with Cgroup.open(path, kernel=user) as cg, Program(user, prog.fileno()) as p:
                try:
                    cg.link(p, EGRESS).close()
                except MissingPrivilege as e:  # the kernel's EPERM, not "needs Linux 5.7"
                    assert "CAP_NET_ADMIN" in str(e), str(e)
        finally:
            user.exit()


def test_host_profile_and_its_nearest_named_profile() -> None:
    """Information, not a check: what the host has that the nearest named profile does
    not (printed with -s), and the calibrated profile is what the probes say."""
    host = need_host()
    profile = Profile.host()
    assert profile.features == {k for k, v in probe.probe_all(host).items() if v}
    nearest = profile.nearest()
    diff = Profile.diff(profile, nearest)
    print(f"\nhost {os.uname().release}: nearest named profile {nearest.name}; differs in "
          + (", ".join(f"{'+' if mine else '-'}{k}" for k, (mine, _) in diff.items()) or
             "nothing"))
    print("host vs 6.18:", Profile.diff(profile, Profile.of("6.18")))


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
    ("link before=HEAD", lambda cg, p: cg.link(p, before=HEAD).close(), MPROG, "6.15",
     "6.17", "6.17"),
    ("attach after=TAIL", lambda cg, p: cg.attach(p, after=cgbpf.TAIL), MPROG, "6.12.100",
     "6.18", "6.17"),
    ("link expected_revision", lambda cg, p: cg.link(p, expected_revision=1).close(),
     MPROG, "6.6", "6.17", "6.17"),
    ("detach expected_revision", lambda cg, p: _attach_detach(cg, p, expected_revision=2),
     MPROG, "6.1+preorder_attach", "6.18", "6.17"),
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
    """(host results, results on the model calibrated from the host); the host's scratch
    cgroups are gone after."""
    host: Kernel = need_host()
    real = dict(characterize.characterize(host, PREFIX))
    assert glob.glob(os.path.join(host.cgroup_root, f"{PREFIX}-{os.getpid()}-*")) == []
    return real, dict(characterize.characterize(cgbpf.model("host"), PREFIX))


def test_host_and_model_agree(both: tuple[dict[str, str], dict[str, str]]) -> None:
    real, model = both
    assert len(real) >= 30 and list(real) == list(model)
    assert {n: (real[n], model[n]) for n in real if real[n] != model[n]} == {}
