"""What a program run in the VM can raise besides its own result (VM-SPEC §7.1)."""

from __future__ import annotations


class VmError(Exception):
    """A program could not be run as the kernel would run it."""


class VerifierWouldReject(VmError):
    """The kernel would have refused this program at PROG_LOAD (``errno``, and ``log`` in
    the verifier's words): at load the model answers with that errno; met only at run time,
    it is a check the model's load-time pass does not make (a gap, reported, never turned
    into a verdict)."""

    def __init__(self, err: int, log: str) -> None:
        super().__init__(log)
        self.errno, self.log = err, log


class StepLimit(VerifierWouldReject):
    """More instructions ran than the step budget allows: the kernel would not have loaded
    a program that may not terminate."""


class NotSupportedByVM(VmError):
    """The kernel loads and runs this program; the VM cannot (a kfunc, a tail call, a
    helper that reads kernel memory ...).  Raised when an event runs it, not at load."""


class NondeterministicValue(VmError):
    """The kernel's result depends on what the model cannot know (uninitialised stack, a
    real address used as a number)."""
