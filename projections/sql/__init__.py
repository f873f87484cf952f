"""SQL read models: tables folded from a namespace's events, with their checkpoint in the same transaction.

- models.py: the tables (SQLAlchemy 2 declarative) and the exact decimal column type.
- db.py: engines for SQLite/PostgreSQL, the default database of a store, Alembic config and schema checks.
- projector.py: the fold and its batching, resume and rebuild.
"""
