"""Sync through a flaky S3, end to end (issue 22, case 8).

Two hosts run the real CLI against moto's server through a fault proxy of
our own (tests/faultproxy.py) that spoils about one request in ten in each
way: a body cut off half way, a connection reset after the request landed,
500 InternalError, 503 SlowDown, and an answer a second late. One ``sync``
pushes a few hundred files and a 3 MB file, one ``sync`` on the other
host pulls them all, and ``check`` passes.
"""

from __future__ import annotations

import os
import random

from faultproxy import KINDS, FaultProxy


def test_one_sync_each_way_survives_a_flaky_s3(hosts, s3_url, moto_server):
    rng = random.Random(22)
    with FaultProxy(moto_server, period=10) as proxy:
        a, b = hosts("alpha", s3_url), hosts("beta", s3_url)
        for host in (a, b):
            host.config.write_text(host.config.read_text() + f'\n[s3]\nendpoint_url = "{proxy.url}"\n')
        for i in range(300):
            a.write(f"d{i % 7}/f{i:03}.txt", rng.randbytes(rng.randrange(0, 20_000)))
        a.write("big.bin", os.urandom(3 * 1024 * 1024))

        a.run("sync")
        b.run("sync")
        assert b.tree() == a.tree()
        check = b.run("check", "docs")
        print(f"faults injected over {proxy.requests} requests: {proxy.counts}")
    assert check.stdout.endswith(" file content(s): no problem(s)\n"), check.stdout
    assert all(proxy.counts[kind] > 0 for kind in KINDS), proxy.counts
