"""History into the log: CSV files parsed into market events (csvrows) and appended as steps (importer)."""
