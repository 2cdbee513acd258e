"""Helpers for testing your own tools on cgbpf, the way cgbpf tests itself.

* :class:`Scratch`: a scratch cgroup subtree ``<cgroup2>/<prefix>-<pid>-<n>`` and bpffs
  mounts under /tmp, all removed on exit (even on error or Ctrl-C).
* :func:`send_from` / :func:`in_cgroup` / :func:`udp_loopback`: real loopback UDP from a
  child process moved into a cgroup, so cgroup programs run for real (host only).
* :mod:`cgbpf.testing.pytest_plugin`: a ``kernel`` fixture that runs a test on the host
  kernel and on the model kernel, a ``scratch`` fixture, ``host_only``, ``requires`` (skip
  where the probe says a feature is absent) and a leftover check.  Enable it in your
  ``conftest.py`` with ``pytest_plugins = ["cgbpf.testing.pytest_plugin"]``.

Importing this package needs no pytest; the plugin module does.
"""

from .._scratch import Scratch
from .._traffic import in_cgroup, send_from, udp_loopback

__all__ = ["Scratch", "in_cgroup", "send_from", "udp_loopback"]
