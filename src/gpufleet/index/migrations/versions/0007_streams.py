"""Streaming sources (issue 17): windows, their events and the sources' checkpoints.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Each table is made only where it is missing: a database that ``gpufleet init`` (or an
embedded ``Index``) made from schema.py already has it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if 'stream_windows' not in present:
        op.create_table('stream_windows',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('stream', sa.String(length=512), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('input', sa.Text(), nullable=False),
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.Float(), nullable=False),
        sa.Column('closed_at', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index('ix_stream_windows_stream_state', 'stream_windows',
                        ['stream', 'state'], unique=False)
    if 'stream_events' not in present:
        op.create_table('stream_events',
        sa.Column('stream', sa.String(length=512), nullable=False),
        sa.Column('event_id', sa.String(length=64), nullable=False),
        sa.Column('window_id', sa.String(length=64), nullable=True),
        sa.Column('key', sa.String(length=1024), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('seen_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('stream', 'event_id')
        )
        op.create_index('ix_stream_events_window', 'stream_events', ['window_id'],
                        unique=False)
    if 'stream_checkpoints' not in present:
        op.create_table('stream_checkpoints',
        sa.Column('stream', sa.String(length=512), nullable=False),
        sa.Column('shard', sa.String(length=256), nullable=False),
        sa.Column('position', sa.String(length=256), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('stream', 'shard')
        )


def downgrade() -> None:
    op.drop_table('stream_checkpoints')
    op.drop_index('ix_stream_events_window', table_name='stream_events')
    op.drop_table('stream_events')
    op.drop_index('ix_stream_windows_stream_state', table_name='stream_windows')
    op.drop_table('stream_windows')
