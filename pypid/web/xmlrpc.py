"""
XML-RPC at C{/RPC2} and C{POST /pypi}: C{search} (what C{pip search} calls)
and C{list_packages}, answered from the same L{pypid.index.search.SearchIndex} as
the search page.

Calls are parsed with expat under a guard equivalent to defusedxml's: a
document type declaration, any entity declaration and external entity
references are refused before expansion, so no entity-expansion bomb or
external fetch can happen; bodies are limited in size. Every error is a
well-formed XML-RPC fault with HTTP 200, as XML-RPC clients expect.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from typing import Any
from xmlrpc.client import Fault, ResponseError, Unmarshaller, dumps

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

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class UnsafeXML(ValueError):
    """A document with a DTD or entity declarations."""


def _forbid(*args: Any) -> None:
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
    target.xml(None, None)
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

    def __init__(self, cache: BrowseCache) -> None:
        super().__init__()
        self.cache = cache

    def render_POST(self, request):
        call = self._body(request)

        def answered(body: bytes) -> bytes:
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            request.setHeader(b"content-length", b"%d" % len(body))
            request.setHeader(b"cache-control", b"no-store")
            return body

        # A search or a list of every project takes a time that grows with
        # the index: answered in a thread, from the search index prepared.
        return self.cache.in_thread(lambda index: self.answer(call)).addCallback(answered)

    @staticmethod
    def _body(request) -> bytes:
        content = request.content
        content.seek(0)
        return content.read(MAX_BODY + 1)

    def answer(self, body: bytes) -> bytes:
        """The XML-RPC response (always well-formed) to the call in C{body}."""
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
            return fault(METHOD_NOT_FOUND, f"Method {method!r} is not supported; this index offers search and list_packages.")
        try:
            result = handler(*params)
        except TypeError as e:
            return fault(INVALID_PARAMS, f"Invalid parameters for {method}: {e}.")
        except SearchError as e:
            return fault(APPLICATION_ERROR, f"RuntimeError: {e}")
        return dumps((_clean(result),), methodresponse=True).encode("utf-8")

    def xmlrpc_search(self, spec, operator="and"):
        """C{search(spec, operator)}; see L{pypid.index.search.SearchIndex.spec_search}."""
        return self.cache.index.spec_search(spec, operator)

    def xmlrpc_list_packages(self):
        """Every project's display name."""
        return [entry.name for entry in self.cache.index.entries]
