"""results.floor_s: the roofline's floor of the result's workload on its card

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 09:00:00.000000

A column, beside the record that holds the whole roofline and any step profiles, so that
lists of results read the percent of floor without the records. Results recorded before
have no roofline: NULL.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('floor_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('floor_s')
