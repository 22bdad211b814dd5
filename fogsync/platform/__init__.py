"""Tuning plumbing that knows nothing of shares.

Worker processes for Python-bound batches (``processes``), glibc malloc
settings (``malloc``), O_DIRECT writes of big files (``directio``), thread
pools the whole process shares (``threads``), whole writes and file system
sync (``fsync``), private dirs and files for local state (``private``), byte
sizes that mean one thing in every layer (``sizes``), and the libgcrypt
feature switch measured once per machine (``gcrypt_hwf``).
Imports nothing else of fogsync but ``fogsync.errors``.
"""
