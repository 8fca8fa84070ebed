"""Twisted's adbapi on the pool bench's point-select workload, for
scripts/bench-pool-vs-twisted: the same table (t(id, v), 1 000 rows, WAL,
synchronous=FULL), the same ids, a pool of cp_min=cp_max=N threads, N
point selects outstanding at once (runQuery each), timed from the first
issue to gatherResults firing. Prints one line per round:
"twisted pool/N <queries/s>".

usage: point_select.py DB_PATH QUERIES ROUNDS WORKERS
"""

import sqlite3
import sys
import time

from twisted.enterprise import adbapi
from twisted.internet import defer, reactor

SELECT = "SELECT v FROM t WHERE id = ?"
TABLE_ROWS = 1000


def id_for(i):
    return (i * 7919) % TABLE_ROWS + 1


def create(path):
    conn = sqlite3.connect(path)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode.lower() == "wal", mode
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("DELETE FROM t")
    conn.executemany(
        "INSERT INTO t (id, v) VALUES (?, ?)",
        ((i, "value-%d" % i) for i in range(1, TABLE_ROWS + 1)),
    )
    conn.commit()
    conn.close()


def full(conn):
    conn.execute("PRAGMA synchronous=FULL")


@defer.inlineCallbacks
def run(path, n, rounds, workers):
    pool = adbapi.ConnectionPool(
        "sqlite3",
        path,
        cp_min=workers,
        cp_max=workers,
        check_same_thread=False,
        cp_openfun=full,
    )
    try:
        yield defer.gatherResults(
            [pool.runQuery(SELECT, (id_for(i),)) for i in range(64)]
        )
        for _ in range(rounds):
            start = time.perf_counter()
            rows = yield defer.gatherResults(
                [pool.runQuery(SELECT, (id_for(i),)) for i in range(n)]
            )
            took = time.perf_counter() - start
            assert len(rows) == n and all(len(r) == 1 for r in rows)
            print("twisted pool/%d %.0f" % (workers, n / took), flush=True)
    finally:
        pool.close()


def main():
    path, n, rounds, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    create(path)
    failure = []
    d = run(path, n, rounds, workers)
    d.addErrback(failure.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failure:
        failure[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__":
    main()
