"""SQL read models: tables folded from a namespace's events, with their checkpoint in the same transaction.

- models.py: the tables (SQLAlchemy 2 declarative) and the exact decimal column type.
- db.py: engines for SQLite/PostgreSQL and the checkpoints they hold (the schema's migrations: migrations/).
- fold.py: the row fold (ReadModelFold), one handler per event type.
- upsert.py: DBAPI executemany and PostgreSQL COPY upserts, and the transaction they run in.
- projector.py: batches, the checkpoint, resume, follow and rebuild.
"""
