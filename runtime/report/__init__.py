"""Reports of a run: its figures and its time series as a self-contained HTML page or PNG charts."""
