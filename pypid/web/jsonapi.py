"""C{/pypi/<project>/json} and C{/pypi/<project>/<version>/json}."""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import succeed

from pypid.index import pypijson
from pypid.store.interfaces import IPackageStore
from pypid.store.metadata import MetadataError, parse_message
from pypid.index.names import is_valid, normalize
from pypid.index.pages import Page, make_page
from pypid.web.errors import not_found
from pypid.web.resource import PlainResource
from pypid.web.simple import set_serial
from pypid.web.util import base_url, redirect, serve_page

#: How many rendered documents to keep (they vary with the client's Host).
CACHE_SIZE = 4096


class PypiJSON(PlainResource):
    """The index-specific JSON API, in the shape the public index serves."""

    isLeaf = True

    def __init__(self, store: IPackageStore, upstream=None) -> None:
        """
        @param upstream: the upstream fallback's web side
            (L{pypid.web.upstreamfiles.UpstreamWeb}), which answers for
            names that are not local.
        """
        super().__init__()
        self.store = store
        self.upstream = upstream
        self._cache: dict[tuple[str, Optional[str], str], Page] = {}
        store.subscribe(self._changed)

    def _changed(self, snapshot, changed: frozenset) -> None:
        for key in [k for k in self._cache if k[0] in changed]:
            del self._cache[key]

    def render_GET(self, request):
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        if segments and segments[-1] == "":
            segments.pop()
        if len(segments) not in (2, 3) or segments[-1] != "json" or not is_valid(segments[0]):
            raise not_found()
        name = segments[0]
        key = normalize(name)
        version = segments[1] if len(segments) == 3 else None
        if key != name:
            up = "../" * (len(request.postpath) - 1)
            rest = "/".join(segments[1:])
            return redirect(request, f"{up}{key}/{rest}")
        project = self.store.snapshot.get(key)
        if project is None:
            if self.upstream is not None and self.upstream.fallback is not None:
                return self.upstream.serve_json(request, key, version)
            raise not_found(f"Project {key!r} is not on this index.")
        if version is not None and not pypijson.release_files(project, version):
            raise not_found(f"{key} has no release {version!r}.")
        base = base_url(request)
        # What bandersnatch checks against the serial it was told.
        set_serial(request, project.serial)
        cache_key = (key, version, base)
        page = self._cache.get(cache_key)
        if page is not None:
            return serve_page(request, page, b"application/json")
        snapshot = self.store.snapshot
        yanked = snapshot.yanked(key)
        shown = version if version is not None else pypijson.latest_version(project, yanked)
        source = pypijson.metadata_source(pypijson.release_files(project, shown))
        if source is None:
            d = succeed(None)
        else:
            d = self.store.readMetadata(source).addErrback(lambda f: f.trap(MetadataError) and None)

        def render(raw: Optional[bytes]) -> bytes | int:
            message = parse_message(raw) if raw is not None else None
            body = pypijson.project_document(
                project, version, message, base, self.store.hash_algo, project.serial, yanked
            )
            built = make_page(body)
            if self.store.snapshot is snapshot:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[cache_key] = built
            return serve_page(request, built, b"application/json")

        return d.addCallback(render)
