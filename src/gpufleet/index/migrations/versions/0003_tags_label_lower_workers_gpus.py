"""Tags keep their label lower-cased for an indexed search; workers report their GPUs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('workers') as batch:
        batch.add_column(sa.Column('gpus', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('gpu_util_pct', sa.Float(), nullable=True))
        batch.add_column(sa.Column('gpu_memory_mb', sa.Float(), nullable=True))
    with op.batch_alter_table('tags') as batch:
        batch.add_column(sa.Column('label_lower', sa.String(length=256), nullable=True))
    # Filled label by label, lower-cased by Python as the writer and the search do (SQL's
    # lower() is ASCII-only on SQLite); a model has few distinct labels, and each update
    # is a lookup on the label's index.
    tags = sa.table('tags', sa.column('label', sa.String), sa.column('label_lower', sa.String))
    conn = op.get_bind()
    for label in conn.execute(sa.select(tags.c.label).distinct()).scalars().all():
        conn.execute(sa.update(tags).where(tags.c.label == label)
                     .values(label_lower=label.lower()))
    with op.batch_alter_table('tags') as batch:
        batch.alter_column('label_lower', existing_type=sa.String(length=256), nullable=False)
        batch.drop_index('ix_tags_label')
        batch.create_index('ix_tags_label_lower', ['label_lower'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tags') as batch:
        batch.drop_index('ix_tags_label_lower')
        batch.create_index('ix_tags_label', ['label'], unique=False)
        batch.drop_column('label_lower')
    with op.batch_alter_table('workers') as batch:
        for column in ('gpu_memory_mb', 'gpu_util_pct', 'gpus'):
            batch.drop_column(column)
