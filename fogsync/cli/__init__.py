"""The command line pinned in ``../shared/CLI.md``: parsing, rendering, exit codes.

Imports anything; nothing imports it.
"""
