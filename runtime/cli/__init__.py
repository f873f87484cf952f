"""The `tape` command line, the top floor: nothing below imports it. app.py is the root; one module per group."""
