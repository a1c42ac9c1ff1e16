"""
One naming rule (issue 21): functions and methods are snake_case; camelCase
only where Twisted (or watchdog, or the standard library) calls a method by
that name, or where a zope interface of pypid's declares it.
"""

import ast
import logging
from pathlib import Path

PYPID = Path(__file__).resolve().parent.parent / "pypid"

#: Prefixes of names that Twisted dispatches on (render_GET, opt_port, ftp_STOR).
DISPATCHED = ("render_", "opt_", "ftp_")

#: Names Twisted looks up with getattr rather than defining on a base class.
LOOKED_UP = {
    "subCommands",  # usage.Options reads it for sub-commands
    "getContentFile",  # server.Request.gotLength asks the site for the body's file
}


def _bases() -> list[type]:
    """The outside classes pypid's classes override methods of."""
    from twisted.application import service
    from twisted.internet import abstract, protocol
    from twisted.protocols import basic, ftp
    from twisted.python import usage
    from twisted.web import http, resource, server
    from watchdog.events import FileSystemEventHandler

    return [
        resource.Resource, server.Request, server.Site, http.HTTPChannel, http.Request,
        service.Service, service.MultiService, protocol.Protocol, protocol.ProcessProtocol,
        protocol.Factory, protocol.ServerFactory, basic.LineReceiver, ftp.FTP, ftp.FTPFactory,
        ftp.FTPShell, ftp.FTPRealm, ftp.DTP, abstract.FileDescriptor, usage.Options,
        FileSystemEventHandler, logging.Handler,
    ]


def _interface_methods() -> set[str]:
    """Every method a zope interface in pypid, or one of Twisted's that pypid implements, declares."""
    from twisted.application.service import IServiceMaker
    from twisted.cred.checkers import ICredentialsChecker
    from twisted.cred.portal import IRealm

    names: set[str] = set(LOOKED_UP)
    for interface in (IServiceMaker, ICredentialsChecker, IRealm):
        names.update(interface.names())
    for path in PYPID.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", getattr(b, "attr", None)) == "Interface" for b in node.bases
            ):
                names.update(f.name for f in node.body if isinstance(f, ast.FunctionDef))
    return names


def camel_case_defs() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PYPID.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name
                if not name.startswith("__") and name != name.lower() and not name.startswith(DISPATCHED):
                    found.append((str(path.relative_to(PYPID.parent)), node.lineno, name))
    return found


def test_camel_case_only_for_twisted_and_interfaces():
    bases = _bases()
    allowed = _interface_methods()
    wrong = [(path, line, name) for path, line, name in camel_case_defs()
             if name not in allowed and not any(hasattr(base, name) for base in bases)]
    assert wrong == [], "snake_case for pypid's own functions and methods"


def test_the_check_sees_camel_case():
    """The scan finds camelCase definitions (it is not vacuous), and a made-up one is refused."""
    names = {name for _, _, name in camel_case_defs()}
    assert {"getChild", "startService", "fetchPage"} <= names
    assert not any(hasattr(base, "scanDoneLater") for base in _bases())
    assert "scanDoneLater" not in _interface_methods()
