"""Intake: per-folder sync state, one row per message, the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("folder", sa.String(500), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(1000), nullable=False),
        sa.Column("message_id_synthetic", sa.Boolean, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sender", sa.String(500), nullable=False),
        sa.Column("sender_name", sa.String(500), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.Column("received_at", sa.DateTime, nullable=True),
        sa.Column("in_reply_to", sa.String(1000), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("kind_reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("new_text", sa.Text, nullable=False),
        sa.Column("attachments", sa.JSON, nullable=False),
        sa.Column("defects", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_messages_location"),
    )
    op.create_index("ix_messages_content", "messages", ["mailbox", "content_hash"])
    op.create_index("ix_messages_recorded_at", "messages", ["recorded_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("message", sa.Integer, sa.ForeignKey("messages.id"), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_message", "audit_log", ["message"])
    if op.get_bind().dialect.name == "sqlite":
        # The audit log is append-only: refuse edits at the database, not only in our code.
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("messages")
    op.drop_table("sync_state")
