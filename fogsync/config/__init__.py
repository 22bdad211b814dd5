"""The config file and the wiring from it to open shares.

``file`` reads and writes the TOML config (mode 0600); ``shares`` turns a
share's config into its store, repo, state and engine ``Share``. Imports
``engine`` and everything below it.
"""
