"""A call's parameter updates, committed all or nothing even when a signal comes.

A training step writes several params and optimizer states. An interrupt between two of
those writes (Ctrl-C's KeyboardInterrupt, or any signal whose Python handler raises)
would leave some of them new and the others old. Python runs signal handlers only in
the main thread, between bytecodes; so a call in the main thread sets the handlers of
those signals aside from its first write into a param (`begin`) until the last (the end
of the `with` block), and then runs the handler of each signal that came meanwhile.
Until `begin`, a signal interrupts the call at once: it has changed nothing yet.
"""

from __future__ import annotations

import signal
import threading

# The signals a Python program commonly handles (SIGINT's default handler is the one that
# raises KeyboardInterrupt); a signal left to its OS default ends the process anyway.
DEFERRED = tuple(getattr(signal, name) for name in
                 ("SIGINT", "SIGTERM", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2")
                 if hasattr(signal, name))


class Commit:
    """One call's commit: `begin()` before its first write into a param (again is a
    no-op); leaving the `with` block ends it."""

    def __init__(self):
        self._holding = False
        self._set_aside = {}  # signum -> its handler when the commit began
        self._arrived = []    # (signum, frame) of the signals that came while holding

    def __enter__(self) -> "Commit":
        return self

    def begin(self) -> None:
        if self._holding or threading.current_thread() is not threading.main_thread():
            return  # (handlers run in the main thread only: no signal can stop another)
        self._holding = True
        for signum in DEFERRED:
            handler = signal.getsignal(signum)
            if callable(handler):
                # Recorded before it is replaced: a signal between the two lines finds
                # either its own handler or ours, and either way it is restored.
                self._set_aside[signum] = handler
                signal.signal(signum, self._arrive)

    def _arrive(self, signum, frame):
        if self._holding:
            self._arrived.append((signum, frame))
        else:  # a handler of ours not yet restored (see __exit__): act as the user's
            self._set_aside[signum](signum, frame)

    def __exit__(self, *exc_info) -> None:
        self._holding = False  # first: from here any signal goes to its own handler
        for signum, handler in self._set_aside.items():
            signal.signal(signum, handler)
        for signum, frame in self._arrived:
            self._set_aside[signum](signum, frame)  # e.g. raises KeyboardInterrupt now
