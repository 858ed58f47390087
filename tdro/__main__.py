"""`python -m tdro` is the `tdro` command."""

from tdro.cli import run

run()
