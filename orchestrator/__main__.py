"""`python -m orchestrator`: the `orchestrate` command, for a machine where the project is on
PYTHONPATH but not pip-installed (the lent GPU machine)."""

from orchestrator.cli import app

app(prog_name="orchestrate")
