"""Alembic environment: migrations run programmatically from db.store (no alembic.ini needed)."""

from alembic import context

from db.models import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("db migrations run through db.store.open_store()")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
