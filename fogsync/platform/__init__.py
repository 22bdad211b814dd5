"""Tuning plumbing that knows nothing of shares.

Worker processes for Python-bound batches (``processes``), glibc malloc
settings (``malloc``), O_DIRECT writes of big files (``directio``), and the
libgcrypt feature switch measured once per machine (``gcrypt_hwf``), and
byte sizes that mean one thing in every layer (``sizes``).
Imports nothing else of fogsync but ``fogsync.errors``.
"""
