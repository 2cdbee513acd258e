"""The model's BPF VM: programs attached in the model run on simulated events.

Layers (VM-SPEC.md §10): :mod:`.errors` (what a run can raise), :mod:`.regions` (tagged
values: scalars and pointers into regions, never raw addresses), :mod:`.interp` (the ISA
as the kernel runs it after verification), :mod:`.maps` (program-side map operations),
:mod:`.helpers` (the helpers cgroup programs call, available per attach type),
:mod:`.ctx` (the context of each program type), :mod:`.run` (an effective array run and
its verdict), :mod:`.events` (what a model process does: send a datagram, connect,
read a sysctl ...) and :mod:`.testrun` (BPF_PROG_TEST_RUN).  It reads only
:mod:`cgbpf.uapi` and the model's object tables.
"""
