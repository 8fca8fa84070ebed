"""The Twisted echo peer (issue 12): every byte received is written back.

Usage: echo_server.py --port P. Listens on 127.0.0.1 only with the epoll
reactor, prints ``listening 127.0.0.1:PORT`` once bound (``--port 0`` picks a
free port) and serves until killed.
"""

import argparse
import resource
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.python import log  # noqa: E402


class Echo(Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log.startLogging(sys.stderr, setStdout=False)
    port = reactor.listenTCP(args.port, Factory.forProtocol(Echo), interface="127.0.0.1")
    print("listening 127.0.0.1:%d" % port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
