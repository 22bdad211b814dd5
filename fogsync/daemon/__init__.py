"""The background service: watch every share, sync continuously, answer on a socket.

``watch`` (watchdog events, debounced), ``service`` (one worker thread per
share, polling the store), ``control`` (the UNIX socket that ``status`` and
``sync`` talk to). Imports ``config`` and everything below it.
"""
