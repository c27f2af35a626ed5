"""Deadlines: each customer message's due time, state and first response; the signals owed for each transition.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("due_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("deadline_state", sa.String(20), nullable=True))
        table.add_column(sa.Column("answered_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("answered_how", sa.String(40), nullable=True))
        table.add_column(sa.Column("thread_of", sa.Integer(), nullable=True))
    # The sweep reads the open messages only: what it costs follows them, not the mailbox.
    op.create_index("ix_messages_open", "messages", ["mailbox", "deadline_state", "due_at"])
    op.create_index("ix_messages_message_id", "messages", ["mailbox", "message_id"])
    op.create_index("ix_messages_thread_of", "messages", ["thread_of"])
    op.create_table(
        "deadline_signals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message", sa.Integer(), sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("message", "state", "channel", name="uq_deadline_signals_once"),
    )
    op.create_index("ix_deadline_signals_pending", "deadline_signals", ["mailbox", "done_at"])


def downgrade() -> None:
    op.drop_index("ix_deadline_signals_pending", "deadline_signals")
    op.drop_table("deadline_signals")
    op.drop_index("ix_messages_thread_of", "messages")
    op.drop_index("ix_messages_message_id", "messages")
    op.drop_index("ix_messages_open", "messages")
    with op.batch_alter_table("messages") as table:
        for column in ("thread_of", "answered_how", "answered_at", "deadline_state", "due_at"):
            table.drop_column(column)
