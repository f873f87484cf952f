"""Alembic migrations of the SQL read models (projections/sql/models.py).

Used without alembic.ini: projections.sql.db.alembic_config() points script_location at this installed
package. `tape db upgrade` applies them; `tape db status` compares the database's revision with the head.
New revision (from the project root):
    python -c "from alembic import command; from projections.sql.db import alembic_config as c; \
command.revision(c('sqlite:///tmp-rev.sqlite'), 'message', autogenerate=True)"
"""
