"""
C{pypid run}: pypiserver's C{run} command line, as systemd units,
supervisor programs and docker-compose files write it, running pypid in the
foreground. It parses into the same L{pypid.tap.Config} as the equivalent
C{twistd pypid} command line (pypid's own options work here too).
"""

from __future__ import annotations

import getopt
import ipaddress
import sys
from typing import Optional

from twisted.python import usage

from pypid import tap

#: How pypiserver's options map onto pypid's, for C{pypid run --help} and docs/pypiserver.md.
MAPPING = """\
pypiserver's options, as pypid run takes them:
  -p PORT, -i/-H/--interface/--host HOST
                      --port tcp:PORT:interface=HOST (default: port 8080 on
                      every interface, as with pypiserver)
  -P FILE, -a LIST, -o, --overwrite, --disable-fallback, --hash-algo,
  --welcome, --health-endpoint, --cache-control
                      the same options (-P . -a . : no authentication)
  --fallback-url URL  the same, answered by redirect as pypiserver does
                      (--fallback-mode redirect; give --fallback-mode cache for
                      pypid's caching proxy)
  --log-file FILE     twistd's --logfile FILE: the log goes to the file only
  -v, --log-stream, --log-frmt, --log-req-frmt, --log-res-frmt,
  --log-err-frmt, --server, --backend
                      accepted and ignored, with a note
  --server-base-url PREFIX
                      refused: serve under a prefix through a reverse proxy
                      that sends X-Forwarded-Prefix (with --trusted-proxy)

Defaults:
  - The same as pypiserver's: port 8080 on every interface, ~/packages,
    -a update (uploads need -P; without it the index is read-only),
    --hash-algo sha256, --health-endpoint /health.
  - --fallback-mode redirect, where twistd pypid's default is cache: a
    pypiserver fallback answers with a redirect, so pypid run's does too.
  - No default --fallback-url: pypiserver sends the projects it does not
    have to the public index; pypid names no upstream (it does not choose
    where your installs come from), so without --fallback-url there is no
    fallback.
  - The log: start-up, errors and a line per request, where pypiserver
    shows warnings only; --no-access-log drops the request lines.

Other differences: --hash-algo takes sha256, sha384, sha512, md5 or off
(the ones both pip and uv accept); uploads are checked (the archive whole,
its name and version against its metadata) and land atomically; the health
endpoint answers JSON ({"status": "ok", ...}) where pypiserver says Ok;
redirects are relative.
"""

#: pypiserver options that mean nothing to pypid, and why.
IGNORED = {
    "verbose": "pypid logs at one level: start-up, errors and a line per request",
    "log-stream": "pypid logs to the standard output, or to --log-file",
    "log-frmt": "pypid's log lines have their own format (--log-format json for JSON)",
    "log-req-frmt": "pypid's access lines have their own format",
    "log-res-frmt": "pypid's access lines have their own format",
    "log-err-frmt": "pypid's log lines have their own format",
    "server": "pypid is its own server (Twisted)",
    "backend": "pypid always keeps its index in memory and watches the directories",
}


def tcp_description(port: str, host: Optional[str]) -> str:
    """pypiserver's C{-p PORT -i HOST} as an endpoint description."""
    if host is None:
        return f"tcp:{port}"
    host = host.strip()
    try:
        ipv6 = ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        ipv6 = False
    if ipv6:
        return f"tcp6:{port}:interface={host.strip('[]').replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={host}"


class RunOptions(tap.Options):
    """C{pypid run}: L{pypid.tap.Options} with pypiserver's meanings and options added."""

    synopsis = "[options] [PACKAGE_DIR ...]"
    longdesc = (
        "Run pypid in the foreground with pypiserver's 'run' command line: the options of "
        "'pypi-server run' below, and pypid's own. Options may come after the directories."
    )
    command = "pypid run"

    def __init__(self) -> None:
        super().__init__()
        #: One line each: what was given and is ignored, and why.
        self.notes: list[str] = []
        #: twistd's --logfile, from pypiserver's --log-file.
        self.log_file: Optional[str] = None
        self._port: Optional[str] = None
        self._host: Optional[str] = None
        self._given: set[str] = set()
        self.docs["fallback-mode"] = (
            "cache: fetch, cache and serve upstream pages and files; redirect: answer 303 to "
            "FALLBACK_URL/<project>/ (pypiserver's behaviour, and pypid run's default)."
        )
        self.defaults["fallback-mode"] = "redirect"

    def getSynopsis(self) -> str:
        return f"Usage: {self.command} {self.synopsis}"

    def getUsage(self, width: Optional[int] = None) -> str:
        return super().getUsage(width) + "\n" + MAPPING

    def parseOptions(self, options=None) -> None:
        if not hasattr(self, "raw_args"):
            # As given (what --workers gives its workers, which translate them again).
            self.raw_args = list(sys.argv[1:] if options is None else options)
        # pypiserver's argparse takes options after the directories too.
        try:
            argv = self._options_first(list(sys.argv[1:] if options is None else options))
        except usage.UsageError as e:
            self.usage_error(e)
        super().parseOptions(argv)

    def _options_first(self, argv: list[str]) -> list[str]:
        try:
            opts, args = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e))
        short_valued = {self.shortOpt[i] for i in range(len(self.shortOpt) - 1) if self.shortOpt[i + 1] == ":"}
        ordered: list[str] = []
        for opt, value in opts:
            name = opt[2:] if opt.startswith("--") else opt[1:]
            self._given.add(self.synonyms.get(name, self.synonyms.get(name.replace("-", "_"), name)))
            valued = (name + "=") in self.longOpt if opt.startswith("--") else name in short_valued
            ordered += [opt, value] if valued else [opt]
        return ordered + (["--", *args] if args else [])

    def opt_port(self, value: str) -> None:
        """
        Port to listen on (pypiserver's -p PORT, default 8080), on the
        interface of -i; or one of pypid's endpoint strings (repeatable), e.g.
        tcp:3141:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem.
        """
        value = value.strip()
        if value.isdigit():
            self._port = value
        else:
            self["ports"].append(value)

    opt_p = opt_port

    def opt_interface(self, value: str) -> None:
        """Interface to listen on (pypiserver's -i/-H/--interface/--host; default: every interface)."""
        self._host = value

    opt_i = opt_interface

    def opt_host(self, value: str) -> None:
        """The same as -i/--interface (pypiserver's -H/--host)."""
        self._host = value

    opt_H = opt_host

    def opt_log_file(self, value: str) -> None:
        """Write the log to FILE (twistd's --logfile; pypiserver's --log-file)."""
        self.log_file = value

    def opt_h(self) -> None:
        """Display this help and exit."""
        self.opt_help()

    def opt_verbose(self) -> None:
        """pypiserver's -v: accepted and ignored (pypid's log has start-up, errors and a line per request)."""
        self._ignore("verbose", None)

    opt_v = opt_verbose

    def opt_log_stream(self, value: str) -> None:
        """pypiserver's --log-stream: accepted and ignored (pypid logs to stdout, or to --log-file)."""
        self._ignore("log-stream", value)

    def opt_log_frmt(self, value: str) -> None:
        """pypiserver's --log-frmt: accepted and ignored."""
        self._ignore("log-frmt", value)

    def opt_log_req_frmt(self, value: str) -> None:
        """pypiserver's --log-req-frmt: accepted and ignored."""
        self._ignore("log-req-frmt", value)

    def opt_log_res_frmt(self, value: str) -> None:
        """pypiserver's --log-res-frmt: accepted and ignored."""
        self._ignore("log-res-frmt", value)

    def opt_log_err_frmt(self, value: str) -> None:
        """pypiserver's --log-err-frmt: accepted and ignored."""
        self._ignore("log-err-frmt", value)

    def opt_server(self, value: str) -> None:
        """pypiserver's --server METHOD: accepted and ignored (pypid is its own server)."""
        self._ignore("server", value)

    def opt_backend(self, value: str) -> None:
        """pypiserver's --backend: accepted and ignored (pypid always watches and caches)."""
        self._ignore("backend", value)

    def opt_server_base_url(self, value: str) -> None:
        """
        pypiserver's --server-base-url: only / is accepted; pypid is served
        under a prefix through a reverse proxy sending X-Forwarded-Prefix.
        """
        if value.strip() not in ("", "/"):
            raise usage.UsageError(
                f"--server-base-url {value!r}: pypid serves at the root; to serve it under "
                f"{value.rstrip('/')}/, put a reverse proxy in front that strips the prefix and sends "
                "X-Forwarded-Prefix, and give pypid --trusted-proxy PROXY."
            )
        self._ignore("server-base-url", value, "pypid serves at the root already")

    def _ignore(self, option: str, value: Optional[str], why: Optional[str] = None) -> None:
        given = f"--{option}" + (f" {value}" if value is not None else "")
        note = f"note: {given} is ignored: {why or IGNORED[option]}."
        if note not in self.notes:
            self.notes.append(note)

    def postOptions(self) -> None:
        if self._port is not None or self._host is not None:
            self["ports"].append(tcp_description(self._port or "8080", self._host))
        if self["fallback-url"] is not None and "fallback-mode" not in self._given:
            # pypiserver's fallback is a redirect.
            self["fallback-mode"] = "redirect"
        super().postOptions()
        if self["fallback-url"] is None and not self["disable-fallback"]:
            self.notes.append(
                "note: no fallback: pypiserver would send projects it does not have to the public "
                "index, pypid names no upstream (give --fallback-url URL, or --disable-fallback)."
            )
