"""
The twistd plugin's options and service: C{twistd pypid [options] [DIR ...]}.

Option names follow pypiserver's, so that its users can switch with the
commands they already have.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet import endpoints
from twisted.python import usage

from pypid import __version__
from pypid.pages import PageCache
from pypid.scan import HASH_ALGORITHMS
from pypid.service import IndexService
from pypid.store import DirectoryStore
from pypid.web.root import Root, WebConfig
from pypid.web.site import PypidSite

DEFAULT_PORT = "tcp:8080"
_HEALTH = re.compile(r"^/[a-z0-9/_-]+$", re.IGNORECASE)
_FALSE = ("0", "no", "off", "false", "n", "f")


def _not_supported(option: str) -> usage.UsageError:
    return usage.UsageError(f"{option} is not supported yet by this version of pypid.")


def endpoint_description(value: str) -> str:
    """Turn a bare port number into C{tcp:N}; keep endpoint strings."""
    value = value.strip()
    return f"tcp:{value}" if value.isdigit() else value


class Options(usage.Options):
    synopsis = "[options] [PACKAGE_DIR ...]"
    longdesc = (
        "Serve the distribution files in PACKAGE_DIR (default ~/packages) as a "
        "Python package index (simple repository API, HTML and JSON). Several "
        "directories may be given; the first receives uploads."
    )

    optParameters = [
        ["hash-algo", None, "sha256",
         "Hash algorithm of file links: " + ", ".join(HASH_ALGORITHMS) + ", or off."],
        ["welcome", None, None,
         "HTML file to serve as the welcome page; {{URL}}, {{VERSION}}, "
         "{{NUMPKGS}}, {{PACKAGES}} and {{SIMPLE}} are filled in."],
        ["health-endpoint", None, "/health", "Path of the health endpoint."],
        ["cache-control", None, None,
         "Send 'Cache-Control: public, max-age=SECONDS' with package downloads."],
        ["rescan-interval", None, "300",
         "Seconds between full rescans of the package directories (0: never)."],
        ["passwords", "P", None, "htpasswd file for authentication ('.' for none)."],
        ["authenticate", "a", None,
         "Comma-separated actions that need a password: update, download, list ('.' for none)."],
        ["fallback-url", None, None, "Upstream index for projects not found locally."],
    ]
    optFlags = [
        ["overwrite", "o", "Allow uploads to replace existing files."],
        ["disable-fallback", None, "Never consult an upstream index (the default)."],
        ["version", None, "Print pypid's version and exit."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["packages"] = []

    def opt_port(self, value: str) -> None:
        """
        Endpoint to listen on, repeatable: a port number (tcp:N) or any
        Twisted endpoint string, e.g. tcp:3141:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:index=0.
        Default tcp:8080.
        """
        self["ports"].append(endpoint_description(value))

    opt_p = opt_port

    def opt_packages(self, value: str) -> None:
        """A package directory (repeatable; the first receives uploads)."""
        self["packages"].append(value)

    def opt_version(self) -> None:
        print(f"pypid {__version__}")
        raise SystemExit(0)

    def parseArgs(self, *directories: str) -> None:
        self["packages"].extend(directories)

    def postOptions(self) -> None:
        self._check_later_features()
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        self._check_directories()
        self._check_hash_algo()
        self._check_numbers()
        if not _HEALTH.match(self["health-endpoint"] or ""):
            raise usage.UsageError(
                f"--health-endpoint {self['health-endpoint']!r} must be a path like /health "
                "(letters, digits, '/', '_' and '-')."
            )
        welcome = self["welcome"]
        if welcome is not None:
            try:
                with open(welcome, encoding="utf-8") as f:
                    self["welcome-template"] = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"cannot read --welcome file {welcome!r}: {e}")
        else:
            self["welcome-template"] = None

    def _check_later_features(self) -> None:
        # Passwords and fallback are not implemented yet: the values that ask
        # for nothing are accepted (they describe what pypid does), anything
        # else is refused rather than silently ignored.
        passwords, actions = self["passwords"], self["authenticate"]
        if passwords is not None and passwords.strip() != ".":
            raise _not_supported("-P/--passwords")
        if actions is not None and actions.strip() != ".":
            raise _not_supported("-a/--authenticate (only '.' is accepted)")
        if self["overwrite"]:
            raise _not_supported("-o/--overwrite")
        if self["fallback-url"] is not None:
            raise _not_supported("--fallback-url")

    def _check_directories(self) -> None:
        if not self["packages"]:
            self["packages"] = [os.path.expanduser("~/packages")]
        roots = []
        for directory in self["packages"]:
            path = os.path.abspath(os.path.expanduser(directory))
            if not os.path.isdir(path):
                raise usage.UsageError(f"package directory {directory!r} does not exist or is not a directory.")
            if not os.access(path, os.R_OK | os.X_OK):
                raise usage.UsageError(f"package directory {directory!r} is not readable.")
            if path not in roots:
                roots.append(path)
        self["packages"] = roots

    def _check_hash_algo(self) -> None:
        algo = (self["hash-algo"] or "").strip().lower()
        if algo in _FALSE:
            self["hash-algo"] = None
        elif algo in HASH_ALGORITHMS:
            self["hash-algo"] = algo
        else:
            raise usage.UsageError(
                f"--hash-algo {self['hash-algo']!r} is not one of "
                + ", ".join(HASH_ALGORITHMS) + " or off (the ones both pip and uv accept)."
            )

    def _check_numbers(self) -> None:
        for name in ("cache-control", "rescan-interval"):
            value = self[name]
            if value is None:
                continue
            try:
                number = int(value)
                if number < 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--{name} must be a whole number of seconds, not {value!r}.")
            self[name] = number

    def check_endpoints(self, reactor) -> None:
        """Build every endpoint once, so a bad description fails at start."""
        for description in self["ports"]:
            try:
                endpoints.serverFromString(reactor, description)
            except (ValueError, IndexError, TypeError, KeyError, OSError) as e:
                raise usage.UsageError(f"--port {description!r} is not a usable endpoint: {e}")


def makeService(options: Options, reactor=None) -> IService:
    """Build pypid's services from parsed options."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    options.check_endpoints(reactor)
    top = MultiService()
    store = DirectoryStore(options["packages"], options["hash-algo"], reactor)
    pages = PageCache(store.snapshot, store.hash_algo)
    store.subscribe(pages.update)
    IndexService(store, reactor, options["rescan-interval"]).setServiceParent(top)
    config = WebConfig(
        cache_control=options["cache-control"],
        welcome_template=options["welcome-template"],
        health_endpoint=options["health-endpoint"].encode("ascii"),
    )
    site = PypidSite(Root(store, pages, config), reactor=reactor)
    for description in options["ports"]:
        strports.service(description, site, reactor=reactor).setServiceParent(top)
    return top
