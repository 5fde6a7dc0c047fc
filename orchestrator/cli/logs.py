"""`orchestrate logs`: a job's attempt's output, as kept in the database while it ran
(db/read/logs.py), its progress bars collapsed to their last frame; `--follow` keeps
printing what comes in until the attempt ends. It only reads the database, so it works
beside the coordinator that writes it, from anywhere the database can be reached."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from engine.errors import UserError
from orchestrator.cli.common import DbOpt, err, one_line, open_store
from orchestrator.stop_request import StopRequest

FOLLOW_POLL_S = 0.5


class Lines:
    """Output written as it comes, its lines collapsed (collapse_frames) once whole: a line
    still being written (a progress bar being redrawn) waits for its end."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> None:
        from db.read.logs import collapse_frames

        whole, newline, self.pending = (self.pending + text).rpartition("\n")
        if newline:  # print(), not the Rich console: the job's text is no markup
            print(collapse_frames(whole), flush=True)

    def end(self) -> None:
        if self.pending:
            self.feed("\n")


def _job_id(store, job: str, ordinal: int | None) -> int:
    """JOB as `status` and the dashboard show it (a job id), or a sweep's name with the
    ordinal its progress lines show (`job 3`)."""
    from db.read.jobs import job_by_ordinal

    if ordinal is None:
        if not job.isdigit():
            raise UserError(f"JOB is a job id (as `orchestrate status` shows it), not {job!r}; "
                            f"or give a sweep's name and the job's ordinal", 2)
        return int(job)
    found = job_by_ordinal(store, job, ordinal)
    if found is None:
        raise UserError(f"sweep {job!r} has no job {ordinal}", 2)
    return found


def logs(
    job: Annotated[str, typer.Argument(help="Job id (as `status` and the dashboard show it), "
                                            "or a sweep's name followed by the job's ordinal")],
    ordinal: Annotated[int | None, typer.Argument(
        help="With a sweep's name: the job's place in it (`job N` in the sweep's progress)",
        show_default=False)] = None,
    db: DbOpt = None,
    attempt: Annotated[int | None, typer.Option(
        "--attempt", min=1, help="Which attempt", show_default="the latest")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new output until the attempt ends; exit 0 if "
                               "it succeeded, else 1")] = False,
) -> None:
    """Print a job's output: its latest attempt's, or --attempt N's, progress bars collapsed
    to their last frame."""
    from db.read.logs import attempt_log, attempt_numbers

    store = open_store(db, read_only=True)
    job_id = _job_id(store, job, ordinal)
    numbers = attempt_numbers(store, job_id)
    if numbers is None:
        raise UserError(f"no job {job_id} in this database", 2)
    if not numbers:
        raise UserError(f"job {job_id} has not been attempted yet")
    if attempt is not None and attempt not in numbers:
        raise UserError(f"job {job_id} has no attempt {attempt} (attempts: "
                        f"{', '.join(map(str, numbers))})", 2)
    log = attempt_log(store, job_id, attempt)
    lines = Lines()
    lines.feed(log.text)
    if not follow:
        lines.end()
        return
    try:
        with StopRequest() as stop:
            outcome = _follow(store, log, lines, stop)
    except KeyboardInterrupt:  # a second signal, while the first one was being noted
        lines.end()
        raise typer.Exit(130) from None
    lines.end()
    if outcome is None:
        raise typer.Exit(stop.exit_code)
    if outcome != "succeeded":
        err.print(f"attempt {log.number} of job {job_id}: {one_line(outcome)}", markup=False,
                  highlight=False)
        raise typer.Exit(1)


def _follow(store, log, lines: Lines, stop: StopRequest) -> str | None:
    """Print what comes in until the attempt ends; its outcome, or None once a signal asked
    to stop. Its outcome is read before each look at its output: once it reads ended, the
    look after it has all there is."""
    from db.read.logs import attempt_outcome, log_after

    outcome, end = log.outcome, log.end
    while True:
        text, end = log_after(store, log.attempt_id, end)
        lines.feed(text)
        if outcome != "running":
            return outcome
        time.sleep(FOLLOW_POLL_S)  # a signal's handler only notes it: the sleep goes on
        if stop.name:
            return None
        outcome = attempt_outcome(store, log.attempt_id)


COMMANDS = (logs,)
