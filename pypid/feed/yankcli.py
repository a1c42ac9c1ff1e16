"""
C{pypid yank} and C{pypid unyank}: a client of a running index's yank API
(L{pypid.web.yankapi}), so that a yank from the command line is checked,
stored, shown at once and audited exactly like one from the web page, with
whatever store the index runs on.

    pypid yank [--url URL] [-u USER] [--reason TEXT] PROJECT VERSION
    pypid yank [--url URL] [-u USER] [--reason TEXT] PROJECT FILENAME ...
    pypid unyank [--url URL] [-u USER] PROJECT VERSION|FILENAME ...
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import sys
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlencode, urlsplit, urlunsplit, unquote

from pypid.index.filenames import parse_filename

DEFAULT_URL = "http://127.0.0.1:8080/"


def api_url(index: str, action: str) -> tuple[str, Optional[str], Optional[str]]:
    """
    The API URL of C{action} below the index root C{index} (an index URL
    ending in C{/simple/} is taken for its root), and any user name and
    password written in it.
    """
    parts = urlsplit(index if "://" in index else "http://" + index)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if path.endswith("/simple/"):
        path = path[: -len("simple/")]
    return urlunsplit((parts.scheme, netloc, path + "+api/" + action, "", "")), user, password


def form(project: str, targets: list[str], reason: Optional[str]) -> list[tuple[str, str]]:
    """The form fields: a version, or file names (which parse as distribution files)."""
    fields = [("project", project)]
    if len(targets) == 1 and parse_filename(targets[0]) is None:
        fields.append(("version", targets[0]))
    else:
        for target in targets:
            if parse_filename(target) is None:
                raise ValueError(f"{target!r} is not a distribution file name (give one VERSION, or FILENAMEs)")
            fields.append(("file", target))
    if reason is not None:
        fields.append(("reason", reason))
    return fields


def _password(args: argparse.Namespace, user: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    from_env = os.environ.get("PYPID_PASSWORD")
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise ValueError(f"no password for {user}: set PYPID_PASSWORD, or give --password-stdin")
    return getpass.getpass(f"Password for {user}: ")


def main(action: str, argv: list[str]) -> int:
    yank = action == "yank"
    parser = argparse.ArgumentParser(
        prog=f"pypid {action}",
        description=(
            "Yank a release (every file of it) or some files of a local project: installers then "
            "skip them unless a requirement pins the version with ==. Sent to the running index's "
            "yank API, with the credentials of an uploader of the project."
            if yank else
            "Unyank a release or some files of a local project (undo 'pypid yank'). Sent to the "
            "running index's yank API, with the credentials of an uploader of the project."
        ),
        epilog=(
            "The password comes from PYPID_PASSWORD, --password-stdin, or a prompt; with "
            "-u __token__ it is an API token. The index URL may carry them too "
            "(http://user:password@host:port/)."
        ),
    )
    parser.add_argument("project", metavar="PROJECT")
    parser.add_argument("targets", metavar="VERSION|FILENAME", nargs="+",
                        help="one version (the whole release), or file names")
    parser.add_argument("--url", default=os.environ.get("PYPID_URL", DEFAULT_URL),
                        help=f"the index (its root or /simple/ URL); default $PYPID_URL or {DEFAULT_URL}")
    parser.add_argument("-u", "--user", default=os.environ.get("PYPID_USER"),
                        help="the user name (__token__ for an API token); default $PYPID_USER")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    if yank:
        parser.add_argument("--reason", help="why, shown to whoever installs it (one line, at most 500 characters)")
    args = parser.parse_args(argv)
    try:
        url, url_user, url_password = api_url(args.url, action)
        fields = form(args.project, args.targets, getattr(args, "reason", None))
        user = args.user or url_user
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "pypid-cli"}
        if user is not None:
            password = url_password if url_password is not None and user == url_user else _password(args, user)
            raw = f"{user}:{password}".encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    except ValueError as e:
        print(f"pypid {action}: {e}", file=sys.stderr)
        return 2
    request = urllib.request.Request(url, data=urlencode(fields).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            print(response.read().decode("utf-8", "replace").strip())
            return 0
    except urllib.error.HTTPError as e:
        message = e.read().decode("utf-8", "replace").strip() or e.reason
        hint = ""
        if e.code == 401 and user is None:
            hint = " (give -u USER)"
        print(f"pypid {action}: {e.code} {message}{hint}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"pypid {action}: cannot reach {url}: {reason}", file=sys.stderr)
        return 1
