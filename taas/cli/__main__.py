"""`python -m taas.cli`: the same entry point as the `taas` console script."""

from taas.cli.main import main

main()
