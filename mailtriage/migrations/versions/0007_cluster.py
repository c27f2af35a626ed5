"""Several daemons on one store: mailbox leases with fencing tokens, the daemons sharing them, which daemon recorded
each message; and on PostgreSQL, the audit log made append-only at the database as on SQLite.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "mailbox_leases",
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("acquired_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "daemons",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
    )
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("daemon", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # As the SQLite triggers of 0001: edits and deletions are refused by the database itself.
        op.execute(_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_no_update_or_delete ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    with op.batch_alter_table("messages") as table:
        table.drop_column("daemon")
    op.drop_table("daemons")
    op.drop_table("mailbox_leases")
