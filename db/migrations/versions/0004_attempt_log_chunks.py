"""attempt_log_chunks: a running job's output, appended as it comes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:00:00.000000

Attempts recorded before have only their log_tail, which stays.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempt_log_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attempt_log_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_attempt_log_chunks_attempt_id', ['attempt_id', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attempt_log_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_attempt_log_chunks_attempt_id')

    op.drop_table('attempt_log_chunks')
