"""The Twisted peer of our database-backed line server (issue 12).

``user <id>\\r\\n`` -> ``adbapi.ConnectionPool.runQuery`` point select ->
``<id> <name>\\r\\n`` written from the Deferred's callback; ``error unknown
user <id>`` for an id the table does not hold, ``error bad request`` for any
other line (the protocol of netbench/src/users.rs). A ``LineReceiver`` on the
epoll reactor, the pool's threads each with their own sqlite3 connection
(``check_same_thread=False``, ``cp_min = cp_max = --pool``).

Usage: line_server.py --port P --db PATH [--pool 4]. Listens on 127.0.0.1
only, prints ``listening 127.0.0.1:PORT`` once bound (``--port 0`` picks a
free port) and serves until killed.
"""

import argparse
import resource
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.enterprise import adbapi  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import ServerFactory  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.python import log  # noqa: E402

QUERY = "SELECT name FROM users WHERE id = ?"


class UserLine(LineReceiver):
    delimiter = b"\r\n"

    def connectionMade(self):
        # The Rust peers set TCP_NODELAY too; same socket options for all.
        self.transport.setTcpNoDelay(True)

    def lineReceived(self, line):
        parts = line.split(b" ")
        if len(parts) != 2 or parts[0] != b"user" or not parts[1].isdigit():
            self.sendLine(b"error bad request")
            return
        uid = int(parts[1])
        d = self.factory.pool.runQuery(QUERY, (uid,))
        d.addCallbacks(self._reply, self._failed, callbackArgs=(uid,), errbackArgs=(uid,))

    def _reply(self, rows, uid):
        if rows:
            self.sendLine(b"%d %s" % (uid, rows[0][0].encode()))
        else:
            self.sendLine(b"error unknown user %d" % uid)

    def _failed(self, failure, uid):
        log.err(failure, "user %d" % uid)
        self.sendLine(b"error internal")


class UserFactory(ServerFactory):
    protocol = UserLine

    def __init__(self, pool):
        self.pool = pool


def raise_nofile():
    # The idle test holds 10 000 connections open.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args()
    if args.pool < 1:
        parser.error("--pool must be at least 1")
    raise_nofile()
    log.startLogging(sys.stderr, setStdout=False)
    pool = adbapi.ConnectionPool(
        "sqlite3",
        args.db,
        check_same_thread=False,
        cp_min=args.pool,
        cp_max=args.pool,
        cp_noisy=False,
    )
    port = reactor.listenTCP(args.port, UserFactory(pool), interface="127.0.0.1")
    print("listening 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
