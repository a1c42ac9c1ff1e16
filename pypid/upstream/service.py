"""The upstream client's lifetime as a twistd service."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.logger import Logger


class UpstreamService(Service):
    """
    Builds the connection pool when the service starts (after twistd has
    forked), takes stock of the cache, checks once that the upstream answers
    as a simple index, and closes the pool's connections when it stops.
    """

    log = Logger()

    def __init__(self, client, fallback) -> None:
        self.client = client
        self.fallback = fallback

    def startService(self) -> None:
        super().startService()
        self.client.start()
        self.log.info("falling back to {url}, cache in {directory}",
                      url=self.fallback.url, directory=self.fallback.layout.directory)
        self.fallback.start().addErrback(lambda f: self.log.failure("reading the upstream cache failed", f))
        # Checked in the background: a down upstream does not hold the start up.
        self.fallback.probe().addErrback(lambda f: self.log.failure("checking the upstream failed", f))

    def stopService(self):
        super().stopService()
        return self.client.stop()
