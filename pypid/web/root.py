"""The root of pypid's resource tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pypid import __version__
from pypid.store.interfaces import IPackageStore, IStoreHealth
from pypid.index.names import is_valid, normalize
from pypid.index.pages import PageCache
from pypid.index.render import dumps
from pypid.index.welcome import render_template, render_welcome
from pypid.ops.metrics import Metrics
from pypid.web.browse import BrowseCache, ProjectsRoot, SearchPage
from pypid.web.files import Packages
from pypid.web.jsonapi import PypiJSON
from pypid.web.metricspage import MetricsPage
from pypid.web.simple import SimpleRoot
from pypid.web.errors import not_found, respond
from pypid.web.resource import NotFound, PlainResource
from pypid.web.util import base_url, redirect
from pypid.web.wellknown import Favicon, Robots
from pypid.web.xmlrpc import XmlRpc


@dataclass(frozen=True)
class WebConfig:
    """What the resources need from the command line."""

    #: The Cache-Control header of downloads, if any (C{--cache-control}).
    cache_control: Optional[bytes] = None
    welcome_template: Optional[str] = None
    health_endpoint: bytes = b"/health"
    uploads: bool = False
    #: Serve /metrics (C{--metrics}), to the networks in C{metrics_allow}
    #: only when that is not empty (C{--metrics-allow}).
    metrics: bool = False
    metrics_allow: tuple = ()
    #: Renders /metrics instead of this process's registry (C{--workers}: every worker's).
    metrics_source: Optional[Callable[[], bytes]] = None
    #: Which worker of C{--workers} this is (the health endpoint says, with its pid).
    worker: Optional[int] = None


class Welcome(PlainResource):
    """C{/}: the page for people (C{POST /} goes to uploads and XML-RPC)."""

    isLeaf = True
    also_allowed = (b"POST",)

    def __init__(self, store: IPackageStore, config: WebConfig) -> None:
        super().__init__()
        self.store = store
        self.config = config

    def render_GET(self, request) -> bytes:
        if request.postpath not in ([], [b""]):
            raise not_found()
        snapshot = self.store.snapshot
        base = base_url(request)
        if self.config.welcome_template is not None:
            body = render_template(self.config.welcome_template, base, snapshot.file_count)
        else:
            body = render_welcome(base, len(snapshot.projects), snapshot.file_count, self.config.uploads)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"content-length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body


class Health(PlainResource):
    """
    The health endpoint: 200 and a small JSON status: C{ok}, C{starting}
    (the first index is not in place), or C{degraded} with the C{problems}
    of a store whose engines are partly away (the index still serves what
    it can: a load balancer keeps it).
    """

    isLeaf = True

    def __init__(self, store: IPackageStore, worker: Optional[int] = None) -> None:
        super().__init__()
        self.store = store
        self.worker = worker

    def render_GET(self, request) -> bytes:
        snapshot = self.store.snapshot
        ready = self.store.ready
        status = {
            "status": "ok" if ready else "starting",
            "version": __version__,
            "projects": len(snapshot.projects),
            "files": snapshot.file_count,
        }
        if IStoreHealth.providedBy(self.store):
            problems = self.store.problems()
            if problems:
                if ready:
                    status["status"] = "degraded"
                status["problems"] = problems
            status["serial"] = snapshot.serial
        if self.worker is not None:
            status.update(worker=self.worker, pid=os.getpid())
        body = dumps(status) + b"\n"
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body


class WaitForIndex(Resource):
    """
    Holds a request until the first scan is complete, then processes it
    again from the top, so no page is ever served from a partial index.
    """

    isLeaf = True

    def __init__(self, store: IPackageStore) -> None:
        super().__init__()
        self.store = store

    def render(self, request):
        def again(_) -> object:
            request.process()
            return NOT_DONE_YET

        return respond(request, lambda: self.store.whenReady().addCallback(again))


class Root(PlainResource):
    """
    C{/}: the welcome page, with C{simple/}, C{packages/} and C{pypi/} below
    it, the health endpoint, C{favicon.ico} and C{robots.txt}, C{/<project>}
    redirecting to C{/simple/<project>/} so that the root URL works as an
    index URL, and C{/<project>/json} answering what
    C{/pypi/<project>/json} does (pypiserver's route, which MicroPython's
    upip reads; it follows no redirect).
    """

    def __init__(
        self,
        store: IPackageStore,
        pages: PageCache,
        config: WebConfig,
        upload: Optional[Resource] = None,
        protect: Optional[Callable[[bytes, Resource], Resource]] = None,
        upstream=None,
        api: Optional[Resource] = None,
        threads=None,
        metrics: Optional[Metrics] = None,
    ) -> None:
        """
        @param upload: answers C{POST} on C{/}, C{/legacy} and C{/legacy/}
            (the legacy upload API; see L{pypid.web.upload}).
        @param protect: C{protect(name, child)} wraps the C{simple},
            C{packages} and C{pypi} children, e.g. in an authentication
            L{pypid.web.guard.Guard}.
        @param upstream: the upstream fallback, a
            L{pypid.web.upstreamfiles.UpstreamWeb}; in cache mode, cached upstream
            files are served under C{+upstream/} (C{+} is in no project name).
        @param api: C{+api/}: the yank API (L{pypid.web.yankapi.YankAPI}),
            which checks credentials itself.
        @param metrics: what C{/metrics} shows (the process's L{Metrics},
            which the site records into).
        @param threads: where work that grows with the index runs (a
            L{pypid.threads.Threads}; L{None}: at once, in tests).
        """
        super().__init__()
        self.store = store
        self.config = config
        self._upload = upload
        children = {
            b"simple": SimpleRoot(pages, upstream),
            b"packages": Packages(store, pages, config.cache_control),
            b"pypi": PypiJSON(store, upstream),
        }
        # Pages for people and XML-RPC search, from one search index.
        browse = BrowseCache(store, threads)
        children[b"project"] = ProjectsRoot(browse, forms=config.uploads)
        children[b"search"] = SearchPage(browse)
        children[b"RPC2"] = XmlRpc(browse)
        if upstream is not None and upstream.fallback is not None:
            from pypid.web.upstreamfiles import UpstreamFiles

            children[b"+upstream"] = UpstreamFiles(upstream)
        for name, child in children.items():
            self.putChild(name, protect(name, child) if protect is not None else child)
        self._api = api
        if api is not None:
            self.putChild(b"+api", api)
        self.putChild(b"", Welcome(store, config))
        self.putChild(b"favicon.ico", Favicon())
        self.putChild(b"robots.txt", Robots())
        # Without --metrics, /metrics is no project shortcut either.
        if config.metrics:
            registry = (metrics if metrics is not None else Metrics()).registry
            self.putChild(b"metrics", MetricsPage(registry, config.metrics_allow, source=config.metrics_source))
        else:
            self.putChild(b"metrics", NotFound())
        self._health = Health(store, config.worker)
        self._wait = WaitForIndex(store)

    def take_body(self, request, method: bytes, uri: bytes, length):
        """
        Who takes a request's body, asked with its head (see
        L{PypidSite.take_body}): uploads' own, or an answer due before the
        body is read (uploads' or the yank API's).
        """
        for resource in (self._upload, self._api):
            take = getattr(resource, "take_body", None)
            if take is not None:
                decision = take(request, method, uri, length)
                if decision is not None:
                    return decision
        return None

    def getChildWithDefault(self, path: bytes, request) -> Resource:
        if request.path == self.config.health_endpoint:
            return self._health
        if path in (b"", b"pypi") and _is_xmlrpc(request):
            # pip search POSTs text/xml to the index URL it is given: XML-RPC
            # at / and /pypi (GET /pypi/... is the JSON API, POST / uploads).
            return self.children[b"RPC2"] if self.store.ready else self._wait
        if request.method == b"POST" and path in (b"", b"legacy") and self._upload is not None:
            return self._upload
        if path not in _AT_ONCE and not self.store.ready:
            return self._wait
        if path not in self.children and request.postpath in ([b"json"], [b"json", b""]):
            # /<project>/json is /pypi/<project>/json (behind the same guard).
            request.prepath.pop()
            request.postpath = [path, *request.postpath]
            return self.children[b"pypi"]
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request) -> Resource:
        return ProjectShortcut(path)


#: Answered without waiting for the first scan.
_AT_ONCE = (b"", b"favicon.ico", b"robots.txt", b"metrics")


def _is_xmlrpc(request) -> bool:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    return (
        request.method == b"POST"
        and request.postpath in ([], [b""])
        and content_type in (b"text/xml", b"application/xml")
    )


class ProjectShortcut(PlainResource):
    """C{/<project>} and C{/<project>/}: 303 to the project's simple page."""

    isLeaf = True

    def __init__(self, segment: bytes) -> None:
        super().__init__()
        self.segment = segment
        if segment == b"legacy":
            # POST /legacy is the upload URL.
            self.also_allowed = (b"POST",)

    def render_GET(self, request) -> bytes:
        try:
            name = self.segment.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if not is_valid(name) or request.postpath not in ([], [b""]):
            raise not_found()
        up = "../" if request.postpath == [b""] else ""
        return redirect(request, f"{up}simple/{normalize(name)}/", http.SEE_OTHER)
