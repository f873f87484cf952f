"""`python -m runtime.cli`: the same as the `tape` console script."""
from runtime.cli.app import main

main()
