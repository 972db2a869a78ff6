"""``python -m bench.fanout``: the command line of bench/fanout/cli.py."""

from .cli import main

main()
