"""Alembic environment: the store runs migrations itself on the connection it opened (see ``store.migrate``)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
