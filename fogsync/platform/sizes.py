"""Sizes: byte counts that mean the same thing in every layer that uses them.

Knows nothing of shares; any layer may import it.
"""

MIB = 1 << 20

# Files are read, hashed and copied in pieces of this: few enough calls that their cost is
# lost in the bytes, small enough to stay in the CPU's cache between reading and using them.
FILE_PIECE = MIB
