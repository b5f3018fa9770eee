"""Alembic environment of the app database.

Migrations run only through `app.db.migrate`, which hands over an open connection (inside a
transaction it commits itself) in ``config.attributes["connection"]``; there is no alembic.ini and
no offline (SQL script) mode.
"""

from alembic import context

from app.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the app migrations through app.db.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # Other components keep their tables in the same database (the registry's, with their own
    # alembic environment): autogenerate compares the app's own tables only.
    include_name=lambda name, type_, _parents: type_ != "table" or name in Base.metadata.tables,
)
with context.begin_transaction():
    context.run_migrations()
