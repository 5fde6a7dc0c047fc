"""Errors a job reports as its own fault (error_kind bad_input), not the engine's.

Defined here rather than in engine.bench: `python -m engine.bench` runs that module as
__main__, so an adapter importing engine.bench would raise a second, different class."""


class BadInput(Exception):
    """The job cannot run as given: bad job JSON, model, engine kind, options or workload,
    or an engine this worker does not have."""
