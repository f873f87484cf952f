"""The research runtime: backtests over a slice of history, their runs, reports and re-runs."""
