"""Alembic environment of the registry's tables.

Migrations run only through `registry.db.migrate`, which hands over an open connection in
``config.attributes["connection"]``. The version table is the registry's own
(`alembic_version_registry`), and autogenerate compares the registry's tables only: the app's
live in the same database by default.
"""

from alembic import context

from registry.db.models import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the registry migrations through registry.db.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=lambda name, type_, _parents: type_ != "table" or name in Base.metadata.tables,
)
with context.begin_transaction():
    context.run_migrations()
