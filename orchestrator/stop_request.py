"""Stopping a long-running command by signal: the handler only notes it, the command's loop
looks between two steps. A signal noted this way is never lost, wherever it lands (a
KeyboardInterrupt raised inside a finaliser or a library's cleanup can be swallowed)."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Ctrl-C, SIGTERM (kill, systemd, a container's stop) and SIGHUP (the SSH session that
    started the command closed) stop a command the same way. The handler only notes the
    signal; the loop sees it between two steps (a sweep: so no attempt is left
    half-recorded, then cancels the running jobs' process groups, marks their attempts
    cancelled and releases the lease). A second signal while that runs raises
    KeyboardInterrupt at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}
        return self

    def __exit__(self, *_exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _note(self, signum: int, _frame) -> None:
        if self.name:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return exit_code(self.name)


def exit_code(signal_name: str) -> int:
    """The shell's code for a command a signal ended (130 for Ctrl-C): 128 + its number."""
    return 128 + signal.Signals[signal_name].value
