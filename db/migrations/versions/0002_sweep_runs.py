"""sweep runs: one row per coordinator run of a sweep

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 09:00:00.000000

A sweep recorded before this table has only its last run in the sweeps table
(last_started_at .. last_finished_at, or its heartbeat while a coordinator holds it): that
run becomes its one row, so its duration reads as it did before.
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=300), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended', sa.String(length=20), nullable=True),
    sa.Column('signal', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sweep_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_runs_sweep_id'), ['sweep_id'], unique=False)

    op.execute(
        "INSERT INTO sweep_runs (sweep_id, owner, started_at, beat_at, ended_at) "
        "SELECT id, owner, last_started_at, "
        "COALESCE(last_finished_at, heartbeat_at, last_started_at), last_finished_at "
        "FROM sweeps WHERE last_started_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('sweep_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweep_runs_sweep_id'))

    op.drop_table('sweep_runs')
