"""The initial schema: every table of index/schema.py as of the first release with migrations.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('revoked_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model', sa.String(length=512), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('desired', sa.Integer(), nullable=False),
    sa.Column('doc', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_decisions_model', 'decisions', ['model', 'id'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=512), nullable=False),
    sa.Column('input', sa.Text(), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('deadline_s', sa.Float(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('manifests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('inbox', sa.Text(), nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('version', sa.String(length=256), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('seen_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('tags',
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.String(length=128), nullable=False),
    sa.Column('label', sa.String(length=256), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('job_id', 'key', 'rank')
    )
    op.create_index('ix_tags_label', 'tags', ['label'], unique=False)
    op.create_index('ix_tags_tag_id', 'tags', ['tag_id'], unique=False)
    op.create_table('workers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=256), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=512), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.Column('bootstrap_s', sa.Float(), nullable=True),
    sa.Column('instance', sa.String(length=128), nullable=True),
    sa.Column('capacity', sa.String(length=16), nullable=True),
    sa.Column('price_per_h', sa.Float(), nullable=True),
    sa.Column('busy_s', sa.Float(), nullable=True),
    sa.Column('idle_s', sa.Float(), nullable=True),
    sa.Column('items', sa.Integer(), nullable=True),
    sa.Column('state_since', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('items',
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('infer_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'key')
    )
    op.create_index('ix_items_job_status', 'items', ['job_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_items_job_status', table_name='items')
    op.drop_table('items')
    op.drop_table('workers')
    op.drop_index('ix_tags_tag_id', table_name='tags')
    op.drop_index('ix_tags_label', table_name='tags')
    op.drop_table('tags')
    op.drop_table('manifests')
    op.drop_table('jobs')
    op.drop_index('ix_decisions_model', table_name='decisions')
    op.drop_table('decisions')
    op.drop_table('api_keys')
