"""Classification: each message's category, confidence, language and the model that decided.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("category", sa.String(100), nullable=True))
        table.add_column(sa.Column("predicted", sa.String(100), nullable=True))
        table.add_column(sa.Column("confidence", sa.Float, nullable=True))
        table.add_column(sa.Column("language", sa.String(20), nullable=True))
        table.add_column(sa.Column("model_version", sa.String(40), nullable=True))
    op.create_index("ix_messages_category", "messages", ["category"])


def downgrade() -> None:
    op.drop_index("ix_messages_category", "messages")
    with op.batch_alter_table("messages") as table:
        for column in ("model_version", "language", "confidence", "predicted", "category"):
            table.drop_column(column)
