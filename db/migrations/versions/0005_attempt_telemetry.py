"""attempt_telemetry: an attempt's GPU samples (utilisation, memory, power, clock,
temperature, throttle reasons, other processes), one row an attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:00:00.000000

Attempts recorded before have none.
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempt_telemetry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('period_s', sa.Float(), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('done_s', sa.Float(), nullable=True),
    sa.Column('series', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('attempt_id')
    )


def downgrade() -> None:
    op.drop_table('attempt_telemetry')
