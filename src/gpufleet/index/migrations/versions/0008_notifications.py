"""Completion notifications: targets, the outbox of events to deliver, and the delivery log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _missing(name: str) -> bool:
    # A database that `gpufleet init` (or Index's create_all) made already has the tables.
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing('notify_targets'):
        op.create_table('notify_targets',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('tenant', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.String(length=64), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('address', sa.Text(), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=True),
        sa.Column('events', sa.String(length=64), nullable=False),
        sa.Column('progress_s', sa.Float(), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index('ix_notify_targets_tenant', 'notify_targets', ['tenant'], unique=False)
    if _missing('notify_outbox'):
        op.create_table('notify_outbox',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('target_id', sa.String(length=32), nullable=False),
        sa.Column('job_id', sa.String(length=64), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_at', sa.Float(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('finished_at', sa.Float(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index('ix_notify_outbox_due', 'notify_outbox', ['state', 'next_at'],
                        unique=False)
        op.create_index('ix_notify_outbox_target_job', 'notify_outbox',
                        ['target_id', 'job_id'], unique=False)
    if _missing('notify_log'):
        op.create_table('notify_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('outbox_id', sa.String(length=64), nullable=False),
        sa.Column('target_id', sa.String(length=32), nullable=False),
        sa.Column('job_id', sa.String(length=64), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('status', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('ms', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index('ix_notify_log_target', 'notify_log', ['target_id', 'id'],
                        unique=False)


def downgrade() -> None:
    op.drop_index('ix_notify_log_target', table_name='notify_log')
    op.drop_table('notify_log')
    op.drop_index('ix_notify_outbox_target_job', table_name='notify_outbox')
    op.drop_index('ix_notify_outbox_due', table_name='notify_outbox')
    op.drop_table('notify_outbox')
    op.drop_index('ix_notify_targets_tenant', table_name='notify_targets')
    op.drop_table('notify_targets')
