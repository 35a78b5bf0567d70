"""``python -m executor``: the ``rexec`` program."""

from executor.cli import entry

entry()
