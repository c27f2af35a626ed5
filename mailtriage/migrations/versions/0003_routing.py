"""Routing and drafts: who decided a message's handling and why, and what is left to do on the server.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("decided_by", sa.String(200), nullable=True))
        table.add_column(sa.Column("route", sa.JSON, nullable=True))
    op.create_index("ix_messages_status", "messages", ["mailbox", "status"])


def downgrade() -> None:
    op.drop_index("ix_messages_status", "messages")
    with op.batch_alter_table("messages") as table:
        table.drop_column("route")
        table.drop_column("decided_by")
