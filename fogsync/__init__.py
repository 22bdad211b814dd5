"""FogSync: an encrypted folder-sync client (store format "Mark III").

Packages, bottom up (docs/architecture.md): ``platform``, ``format``,
``store``, ``folder`` and ``repo``, ``engine``, ``config``, ``daemon``,
``cli``. A package imports only those below it (checked by import-linter,
``.importlinter``); ``errors`` is shared by all.
"""

__version__ = "0.1.0"
