"""
The HTTP side on the command line: C{-p/--port}, C{--welcome},
C{--health-endpoint}, C{--cache-control}, C{--trusted-proxy},
C{--metrics}, C{--metrics-allow}, and the connection limits
(C{--max-connections}, C{--header-timeout}, C{--idle-timeout}); and the site, the endpoints and the
start-up line built from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from pypid.counts import counted
from pypid.ops.values import endpoint_description, whole_seconds
from pypid.ops.startup import is_tls
from pypid.web import channel

DEFAULT_PORT = "tcp:8080"
_HEALTH = re.compile(r"^/[a-z0-9/_-]+$", re.IGNORECASE)
#: The first path segments pypid serves: a health endpoint under one of
#: them would hide what is there.
SERVED = ("simple", "packages", "pypi", "project", "search", "RPC2", "legacy", "metrics", "+upstream",
          "+api", "favicon.ico", "robots.txt")

log = Logger(namespace="pypid")


@dataclass(frozen=True)
class HttpConfig:
    """The checked HTTP options."""

    #: Endpoint descriptions to listen on (C{--port}).
    ports: tuple[str, ...] = (DEFAULT_PORT,)
    #: The C{--welcome} file's text.
    welcome_template: Optional[str] = None
    health_endpoint: str = "/health"
    #: C{--cache-control} seconds of downloads.
    cache_control: Optional[int] = None
    #: C{--trusted-proxy} values (checked).
    trusted_proxies: tuple[str, ...] = ()
    metrics: bool = False
    #: C{--metrics-allow} networks (checked).
    metrics_allow: tuple[str, ...] = ()
    #: Most HTTP connections served at once (C{--max-connections}).
    max_connections: int = channel.MAX_CONNECTIONS
    #: Seconds for a request's whole head (C{--header-timeout}).
    header_timeout: float = channel.HEADER_TIMEOUT
    #: Seconds a connection may idle, or leave an answer unread (C{--idle-timeout}).
    idle_timeout: float = channel.IDLE_TIMEOUT


class WebOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_web} in postOptions."""

    optParameters = [
        ["welcome", None, None,
         "HTML file to serve as the welcome page; {{URL}}, {{VERSION}}, "
         "{{NUMPKGS}}, {{PACKAGES}} and {{SIMPLE}} are filled in."],
        ["health-endpoint", None, "/health", "Path of the health endpoint."],
        ["cache-control", None, None,
         "Send 'Cache-Control: public, max-age=SECONDS' with package downloads."],
        ["max-connections", None, None,
         f"Most HTTP connections served at once (default {channel.MAX_CONNECTIONS}, or what the "
         "open-file limit allows: two files per connection). At the limit the connection idle "
         "the longest is closed, or, all being busy, a new one is answered 503 with Retry-After."],
        ["header-timeout", None, str(channel.HEADER_TIMEOUT),
         "Seconds for a request's whole head (request line and headers), from its first byte."],
        ["idle-timeout", None, str(channel.IDLE_TIMEOUT),
         "Seconds a connection may wait for a request, and a client may leave an answer unread."],
    ]
    optFlags = [
        ["metrics", None, "Serve Prometheus metrics at /metrics (to everyone unless --metrics-allow)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["trusted-proxy"] = []
        self["metrics-allow"] = []

    def opt_port(self, value: str) -> None:
        """
        Endpoint to listen on, repeatable: a port number (tcp:N) or any
        Twisted endpoint string, e.g. tcp:3141:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:index=0.
        Default tcp:8080.
        """
        self["ports"].append(endpoint_description(value))

    opt_p = opt_port

    def opt_trusted_proxy(self, value: str) -> None:
        """
        A reverse proxy whose X-Forwarded-For/-Proto/-Host/-Prefix headers
        are believed: an address, a network (10.0.0.0/8), or 'unix' for peers
        on a Unix socket. Repeatable.
        """
        self["trusted-proxy"].append(value)

    def opt_metrics_allow(self, value: str) -> None:
        """
        Serve /metrics only to clients in this network (repeatable; implies
        --metrics). The client is the one a trusted proxy names.
        """
        self["metrics-allow"].append(value)

    def check_web(self) -> HttpConfig:
        from pypid.web.proxy import TrustedProxies

        cache_control = whole_seconds("cache-control", self["cache-control"])
        try:
            TrustedProxies.parse(self["trusted-proxy"])
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e} (give an address, a network like 10.0.0.0/8, or 'unix').")
        allow = self["metrics-allow"]
        try:
            TrustedProxies.parse(allow)
        except ValueError as e:
            raise usage.UsageError(f"--metrics-allow: {e} (give an address or a network like 10.0.0.0/8).")
        health = self["health-endpoint"] or ""
        check_health_endpoint(health)
        welcome = self["welcome"]
        template = None
        if welcome is not None:
            try:
                with open(welcome, encoding="utf-8") as f:
                    template = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"cannot read --welcome file {welcome!r}: {e}")
        max_connections, header_timeout, idle_timeout = self.check_connections()
        return HttpConfig(
            ports=tuple(self["ports"]) or (DEFAULT_PORT,),
            welcome_template=template,
            health_endpoint=health,
            cache_control=cache_control,
            trusted_proxies=tuple(self["trusted-proxy"]),
            metrics=bool(self["metrics"] or allow),
            metrics_allow=tuple(allow),
            max_connections=max_connections,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
        )

    def check_connections(self) -> tuple[int, float, float]:
        """--max-connections against the open-file limit; the two timeouts."""
        import resource

        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        except OSError:  # a seccomp filter may refuse even to tell
            hard = resource.RLIM_INFINITY
        room = None if hard == resource.RLIM_INFINITY else channel.connections_for(hard)
        value = self["max-connections"]
        if value is None:
            connections = channel.MAX_CONNECTIONS if room is None else min(channel.MAX_CONNECTIONS, room)
        else:
            try:
                connections = int(value)
                if connections < 1:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--max-connections must be a whole number of connections, not {value!r}.")
            if room is not None and connections > room:
                raise usage.UsageError(
                    f"--max-connections {connections} needs {channel.files_needed(connections)} open files, "
                    f"over the hard limit of {hard} (LimitNOFILE= in a systemd unit, ulimit -Hn in a shell); "
                    f"at most {counted(room, 'connection')} fit."
                )
        timeouts = []
        for name in ("header-timeout", "idle-timeout"):
            value = self[name]
            try:
                seconds = float(value)
                if not 0 < seconds < 86400:
                    raise ValueError
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{name} must be a number of seconds above 0, not {value!r}.")
            timeouts.append(seconds)
        return connections, timeouts[0], timeouts[1]


def check_health_endpoint(path: str) -> None:
    """
    Refuse a health path that is not a plain path, or that would hide a
    route pypid serves (L{SERVED}).
    """
    if not _HEALTH.match(path):
        raise usage.UsageError(
            f"--health-endpoint {path!r} must be a path like /health "
            "(letters, digits, '/', '_' and '-')."
        )
    first = path.strip("/").split("/")[0].lower()
    for served in SERVED:
        if first == served.lower():
            raise usage.UsageError(
                f"--health-endpoint {path!r} would hide /{served}, which pypid serves; "
                "choose another path, such as /health."
            )


#: The listen backlog of pypid's sockets unless the endpoint names one:
#: Twisted's default of 50 drops the connections of a burst past it, and
#: their clients wait 1, 3, 7, 15 ... seconds to try again (3,000 clients at
#: once took over 2 minutes to serve, 8.5 s with a backlog that holds them).
#: The kernel caps it at net.core.somaxconn.
BACKLOG = 1024
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")


def with_backlog(description: str) -> str:
    """C{description} with C{backlog=BACKLOG} added, for the socket types that take one and do not name theirs."""
    kind = description.split(":", 1)[0].lower()
    if kind not in _BACKLOG_TYPES or re.search(r"(^|:)backlog=", description):
        return description
    return f"{description}:backlog={BACKLOG}"


def endpoint(reactor, option: str, description: str):
    """
    The server endpoint of C{description}, built once at start so that a
    bad string, a missing socket or an unreadable TLS key is a usage error.
    A socket's listen backlog is L{BACKLOG} unless it names its own.
    """
    try:
        return endpoints.serverFromString(reactor, with_backlog(description))
    except (ValueError, IndexError, TypeError, KeyError, OSError) as e:
        raise usage.UsageError(f"{option} {description!r} is not a usable endpoint: {e}")
    except Exception as e:
        # pyOpenSSL's errors, for a key or certificate it cannot load.
        raise usage.UsageError(f"{option} {description!r}: cannot load its TLS key or certificate (are they PEM files?): {e}")


def guard(actions: frozenset, authenticator) -> Optional[Callable]:
    """
    The wrapper protecting reads (C{-a download}, C{-a list}): C{protect(name,
    child)} for the children of the root, or L{None} when reads are open.
    """
    if authenticator is None or not actions & {"download", "list"}:
        return None
    from pypid.web.guard import Guard, is_listing
    from pypid.web.scopes import ReadScope

    def protect(name: bytes, child):
        # Behind the guard, an API token reads only what its scope covers.
        scoped = ReadScope(child, name)
        if name == b"+upstream":
            return Guard(scoped, authenticator, lambda postpath: "download" in actions)
        if name == b"packages":
            return Guard(scoped, authenticator,
                         lambda postpath: ("list" if is_listing(postpath) else "download") in actions)
        if "list" in actions:
            return Guard(scoped, authenticator)
        return child

    return protect


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def served_line(urls: Sequence[str], projects: int, files: int) -> str:
    """C{serving http://127.0.0.1:3141/simple/ : 12 projects, 40 files}."""
    where = ", ".join(urls) if urls else "(no TCP port)"
    return f"serving {where} : {_plural(projects, 'project')}, {_plural(files, 'file')}"


def announce(store, listeners: Sequence, descriptions: Sequence[str]) -> None:
    """Log where the index is served, with its counts, once the first scan is done."""

    def ready(_):
        urls = []
        for listener, description in zip(listeners, descriptions):
            url = listener.url("https" if is_tls(description) else "http")
            if url is not None:
                urls.append(url + "simple/" + (" (all interfaces)" if listener.everywhere else ""))
        snapshot = store.snapshot
        log.info("{line}", line=served_line(urls, len(snapshot.projects), snapshot.file_count))

    store.whenReady().addCallback(ready)
