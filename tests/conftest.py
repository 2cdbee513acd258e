"""The suite runs on cgbpf's own pytest plugin, the one users get
(``cgbpf.testing.pytest_plugin``): the ``kernel`` fixture runs a test on the host (a
failure, not a skip, under CI=true when it cannot run) and on a fresh model machine of the
host's kernel (``model("host")``: calibrated by probing it; mainline 6.18 where the host
cannot be probed); ``host_only`` keeps a test on the host; ``scratch`` is a cgroup subtree
per test; the run fails if one of its cgroups or bpffs mounts is left."""

pytest_plugins = ["cgbpf.testing.pytest_plugin"]
