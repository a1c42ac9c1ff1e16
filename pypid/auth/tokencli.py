"""
C{pypid token create|list|revoke}: manage the API tokens file given to
C{twistd pypid --tokens FILE}. The server reads it again when it changes:
a new token works, and a revoked one stops working, at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Optional

from pypid.auth.tokens import (
    ACTIONS,
    DEFAULT_ACTIONS,
    Token,
    TokenFile,
    TokenFileError,
    check_name,
    describe,
    last_used_path,
    new_token,
    parse_expiry,
    read_last_used,
)

_GLOB = re.compile(r"^[A-Za-z0-9._*?\[\]!-]+\Z")


class TokenCommandError(Exception):
    pass


def _patterns(values: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not _GLOB.match(part):
                raise TokenCommandError(f"--project {part!r} is not a project name or glob (acme-*)")
            pattern = re.sub(r"[-_.]+", "-", part).lower()
            if pattern not in out:
                out.append(pattern)
    return tuple(out) or ("*",)


def _actions(value: Optional[str]) -> frozenset[str]:
    if value is None:
        return frozenset(DEFAULT_ACTIONS)
    actions = {a.strip().lower() for a in value.split(",") if a.strip()}
    unknown = actions - set(ACTIONS)
    if unknown or not actions:
        raise TokenCommandError(f"--action {value!r}: give some of {', '.join(ACTIONS)}, separated by commas")
    return frozenset(actions)


def create(path: str, user: str, projects: list[str], actions: Optional[str], expires: Optional[str],
           name: Optional[str], now: Optional[float] = None) -> tuple[str, Token]:
    """Add a new token to the file at C{path} (made if missing); returns it and its record."""
    now = time.time() if now is None else now
    if not user or ":" in user or any(c.isspace() for c in user):
        raise TokenCommandError(f"--user {user!r} is not a user name")
    scope = _patterns(projects)
    allowed = _actions(actions)
    try:
        until = parse_expiry(expires or "never", now)
    except ValueError as e:
        raise TokenCommandError(f"--expires: {e}")
    tokens = _read(path)
    token, token_id, digest = new_token()
    try:
        name = check_name(name or f"{user}-{token_id[:6]}")
    except ValueError as e:
        raise TokenCommandError(str(e))
    if any(t.name == name and t.revoked is None for t in tokens.tokens):
        raise TokenCommandError(f"there is already a token named {name!r} (revoke it, or choose another --name)")
    record = Token(token_id, name, user, scope, allowed, float(int(now)), until, None, digest)
    tokens.add(record)
    tokens.write(path)
    return token, record


def revoke(path: str, which: str, now: Optional[float] = None) -> Token:
    """Mark the token named or numbered C{which} revoked (it stays listed)."""
    tokens = _read(path)
    matches = [t for t in tokens.tokens if t.id == which] or [
        t for t in tokens.tokens if t.name == which and t.revoked is None]
    if not matches:
        revoked = [t for t in tokens.tokens if t.name == which]
        if revoked:
            raise TokenCommandError(f"token {which!r} is already revoked")
        raise TokenCommandError(f"no token with the name or id {which!r} in {path}")
    token = matches[0]
    if token.revoked is not None:
        raise TokenCommandError(f"token {which!r} is already revoked")
    token = token._replace(revoked=float(int(time.time() if now is None else now)))
    tokens.replace(token)
    tokens.write(path)
    return token


def _read(path: str) -> TokenFile:
    try:
        tokens = TokenFile.read(path)
    except OSError as e:
        raise TokenCommandError(f"cannot read {path}: {e.strerror or e}")
    except TokenFileError as e:
        raise TokenCommandError(str(e))
    if tokens.problems:
        number, why = tokens.problems[0]
        raise TokenCommandError(f"{path} line {number} is not a token ({why}); fix or remove it first")
    return tokens


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pypid token",
        description="Manage the API tokens file given to 'twistd pypid --tokens FILE'. A token acts for a "
                    "user of the password file, within its scope; clients send it as the password of the "
                    "user __token__.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", "-f", default=os.environ.get("PYPID_TOKENS"),
                        help="the tokens file (default $PYPID_TOKENS)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    made = commands.add_parser("create", parents=[common],
                               help="make a token and print it (once: only its hash is kept)")
    made.add_argument("--user", "-u", required=True, help="the user it acts for (a user of -P)")
    made.add_argument("--project", "-p", action="append", default=[], metavar="GLOB",
                      help="a project name or glob it may act on (repeatable; default: every project, '*')")
    made.add_argument("--action", "-a", metavar="ACTIONS",
                      help=f"what it may do: some of {', '.join(ACTIONS)} (default: upload)")
    made.add_argument("--expires", "-e", metavar="WHEN",
                      help="30d, 12h, 2w, 90m, YYYY-MM-DD (end of that day, UTC) or never (default)")
    made.add_argument("--name", "-n", help="a name for lists and audit lines (default USER-ID)")
    commands.add_parser("list", parents=[common], help="every token: name, user, scope, expiry, last use, status")
    gone = commands.add_parser("revoke", parents=[common], help="stop a token from working (it stays listed)")
    gone.add_argument("which", metavar="NAME|ID")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("pypid token: give a command: create, list or revoke", file=sys.stderr)
        return 2
    if not args.file:
        print("pypid token: give --file FILE (the file given to twistd pypid --tokens), or set PYPID_TOKENS",
              file=sys.stderr)
        return 2
    path = os.path.abspath(os.path.expanduser(args.file))
    try:
        if args.command == "create":
            token, record = create(path, args.user, args.project, args.action, args.expires, args.name)
            print(token)
            until = "never" if record.expires is None else time.strftime("%Y-%m-%d %H:%M UTC",
                                                                         time.gmtime(record.expires))
            print(f"token {record.name!r} (id {record.id}) for {record.user}: {record.scope()}; expires {until}. "
                  "It is shown only now: store it where it is used.", file=sys.stderr)
        elif args.command == "list":
            tokens = _read(path)
            if not tokens.tokens:
                print(f"no tokens in {path}")
            else:
                print(table(describe(tokens.tokens, read_last_used(last_used_path(path)), time.time())), end="")
        else:
            record = revoke(path, args.which)
            print(f"revoked token {record.name!r} (id {record.id}) of {record.user}")
    except TokenCommandError as e:
        print(f"pypid token: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pypid token: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
