"""Errors the user can fix, one base for every layer (torch-free: db, orchestrator and
dashboard import it too).

A UserError ends a command in one line, `error: <message>`, and its exit_code: 2 for bad
input (a sweep file, an inventory, a flag), 1 for a condition (an unreachable host, a sweep
another coordinator holds). Anything else reaching the command line is a bug: it gets one
line too, and its traceback is saved to a file (orchestrator/cli/__init__.py).

BadInput is defined here rather than in engine.bench: `python -m engine.bench` runs that
module as __main__, so an adapter importing engine.bench would raise a second, different
class."""

from __future__ import annotations


class UserError(Exception):
    """What the user can fix; the message is one line that says what and where."""

    exit_code: int = 1  # 2: bad input; 1: a condition

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(UserError):
    """The job cannot run as given: bad job JSON, model, engine kind, options or workload,
    or an engine this worker does not have. A job reports it as error_kind bad_input."""

    exit_code = 2
