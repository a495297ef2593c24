"""Jobs record how far their tasks are enqueued, and how often the sweeper re-enqueued them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('enqueuer', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('enqueuer_until', sa.Float(), nullable=True))
        batch.add_column(sa.Column('enqueued_through', sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column('enqueued_at', sa.Float(), nullable=True))
        batch.add_column(sa.Column('requeues', sa.Integer(), server_default='0',
                                   nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        for column in ('requeues', 'enqueued_at', 'enqueued_through', 'enqueuer_until',
                       'enqueuer'):
            batch.drop_column(column)
