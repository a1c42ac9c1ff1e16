"""
XML-RPC at C{/RPC2} and C{POST /pypi}: C{search} (what C{pip search} calls)
and C{list_packages}, answered from the same L{pypid.index.search.SearchIndex} as
the search page; and what mirroring tools (bandersnatch) read of the serial:
C{list_packages_with_serial}, C{changelog_last_serial} and
C{changelog_since_serial}.

Calls are parsed with expat under a guard equivalent to defusedxml's: a
document type declaration, any entity declaration and external entity
references are refused before expansion, so no entity-expansion bomb or
external fetch can happen; bodies are limited in size. Every error is a
well-formed XML-RPC fault with HTTP 200, as XML-RPC clients expect.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from typing import Any, NoReturn
from xmlrpc.client import Fault, ResponseError, Unmarshaller, dumps

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pypid.index.changes import ADD, REMOVE, REMOVE_PROJECT, UNYANK, YANK, ChangesSince
from pypid.web.resource import PlainResource

from pypid.index.search import SearchError
from pypid.web.browse import BrowseCache

#: Largest XML-RPC request body read.
MAX_BODY = 64 * 1024

# Standard fault codes (the XML-RPC "specification for fault code
# interoperability"); -32500 is the application error the public index used.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
APPLICATION_ERROR = -32500

log = Logger()

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class UnsafeXML(ValueError):
    """A document with a DTD or entity declarations."""


def _forbid(*args: Any) -> NoReturn:
    raise UnsafeXML("document type and entity declarations are not allowed")


def parse_call(body: bytes) -> tuple[str, tuple]:
    """
    The method name and parameters of an XML-RPC call.

    @raise UnsafeXML: if the document declares a DTD or entities.
    @raise xml.parsers.expat.ExpatError: if it is not well-formed.
    @raise ResponseError: if it is not an XML-RPC call.
    """
    target = Unmarshaller()
    # Expat hands over text already decoded (as xmlrpc.client's own parser).
    target.xml(None, None)  # type: ignore[arg-type]  # typeshed says str; xmlrpc.client's own parser passes None
    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.UnparsedEntityDeclHandler = _forbid
    parser.ExternalEntityRefHandler = _forbid
    parser.buffer_text = True
    parser.StartElementHandler = target.start
    parser.EndElementHandler = target.end
    parser.CharacterDataHandler = target.data
    parser.Parse(body, True)
    params = target.close()
    name = target.getmethodname()
    if not name:
        raise ResponseError("not a method call")
    return name, params


def _clean(value: Any) -> Any:
    """Strings with the characters XML cannot carry removed, recursively."""
    if isinstance(value, str):
        return _NOT_XML.sub("", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def fault(code: int, message: str) -> bytes:
    return dumps(Fault(code, message), methodresponse=True).encode("utf-8")


class XmlRpc(PlainResource):
    """The XML-RPC endpoint (a leaf: C{/RPC2}, C{/pypi}, C{/pypi/})."""

    isLeaf = True

    #: Calls whose work grows with the number of projects.
    IN_THREAD = frozenset({"search", "list_packages", "list_packages_with_serial"})

    def __init__(self, cache: BrowseCache) -> None:
        super().__init__()
        self.cache = cache

    def render_POST(self, request):
        def answered(body: bytes) -> bytes:
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            request.setHeader(b"content-length", b"%d" % len(body))
            request.setHeader(b"cache-control", b"no-store")
            return body

        body = self.answer(self._body(request))
        if isinstance(body, Deferred):
            return body.addCallback(answered)
        return answered(body)

    @staticmethod
    def _body(request) -> bytes:
        content = request.content
        content.seek(0)
        return content.read(MAX_BODY + 1)

    def answer(self, body: bytes):
        """
        The XML-RPC response (always well-formed) to the call in C{body}:
        bytes, or a Deferred of them for calls answered later.
        """
        if len(body) > MAX_BODY:
            return fault(INVALID_REQUEST, f"The request is larger than {MAX_BODY} bytes.")
        try:
            method, params = parse_call(body)
        except UnsafeXML as e:
            return fault(PARSE_ERROR, f"Unsafe XML refused: {e}.")
        except (xml.parsers.expat.ExpatError, ResponseError, ValueError, TypeError, AttributeError,
                KeyError, IndexError, OverflowError) as e:
            return fault(PARSE_ERROR, f"Not a well-formed XML-RPC call: {e}.")
        handler = getattr(self, "xmlrpc_" + method, None) if method.isidentifier() else None
        if handler is None:
            return fault(METHOD_NOT_FOUND, f"Method {method!r} is not supported; this index offers "
                                           f"{', '.join(self.methods())}.")

        def failed(failure) -> bytes:
            log.failure("XML-RPC {method} failed", failure, method=method)
            return fault(APPLICATION_ERROR, f"{method} failed; see the server log.")

        if method in self.IN_THREAD:
            # A search or a list of every project takes a time that grows
            # with the index: answered in a thread, from the search index
            # prepared (the response made there too).
            return self.cache.in_thread(lambda index: self._call(method, handler, params)).addErrback(failed)
        result = self._call(method, handler, params)
        if isinstance(result, Deferred):
            return result.addCallback(_response).addErrback(failed)
        return result

    @staticmethod
    def _call(method: str, handler, params):
        """C{handler(*params)}'s response, a fault for bad parameters, or a Deferred of its result."""
        try:
            result = handler(*params)
        except TypeError as e:
            return fault(INVALID_PARAMS, f"Invalid parameters for {method}: {e}.")
        except SearchError as e:
            return fault(APPLICATION_ERROR, f"RuntimeError: {e}")
        if isinstance(result, Deferred):
            return result
        return _response(result)

    @classmethod
    def methods(cls) -> list[str]:
        return sorted(name[len("xmlrpc_"):] for name in dir(cls) if name.startswith("xmlrpc_"))

    def xmlrpc_search(self, spec, operator="and"):
        """C{search(spec, operator)}; see L{pypid.index.search.SearchIndex.spec_search}."""
        return self.cache.index.spec_search(spec, operator)

    def xmlrpc_list_packages(self):
        """Every project's display name."""
        return [entry.name for entry in self.cache.index.entries]

    # The serial, as mirroring tools read it (the public index's methods).

    def xmlrpc_list_packages_with_serial(self):
        """Every project's display name and the serial of its last change."""
        return {project.name: project.serial for project in self.cache.store.snapshot.projects.values()}

    def xmlrpc_changelog_last_serial(self):
        """The serial of the last change to the index."""
        return self.cache.store.snapshot.serial

    def xmlrpc_changelog_since_serial(self, since=0):
        """
        The changes after serial C{since}, oldest first, as
        C{[name, version, timestamp, action, serial]}. Beyond the change
        log's horizon (or past the index's serial) every project is listed
        with its serial instead, so that the mirror checks them all: a full
        sync. (A project removed meanwhile is then not named.)
        """
        if not isinstance(since, int) or isinstance(since, bool):
            raise TypeError("since_serial must be an integer")
        store = self.cache.store

        def entries(answer: ChangesSince) -> list:
            if answer.complete:
                return [[c.name, c.version, int(c.at), _action(c.action, c.filename), c.serial]
                        for c in answer.changes]
            return [[p.name, "", 0, f"sync: the change log does not reach back to serial {since}", p.serial]
                    for p in store.snapshot.projects.values()]

        return store.changelog(since).addCallback(entries)


def _response(result) -> bytes:
    return dumps((_clean(result),), methodresponse=True).encode("utf-8")


def _action(action: str, filename: str) -> str:
    """A change's action in the words of the public index's change log."""
    if action == ADD:
        return f"add file {filename}"
    if action == REMOVE:
        return f"remove file {filename}"
    if action == REMOVE_PROJECT:
        return "remove project"
    if action == YANK:
        return f"yank file {filename}"
    if action == UNYANK:
        return f"unyank file {filename}"
    return "files changed while the index was not running"
