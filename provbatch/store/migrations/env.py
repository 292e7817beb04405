"""Alembic environment of the results store: migrations run on the connection provbatch hands over.

provbatch runs Alembic from Python (``provbatch store init``), never through
an ``alembic.ini``: the connection arrives in ``config.attributes``.
"""

from alembic import context

from provbatch.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
