"""
Content negotiation for the simple repository API (PEP 691), and the
C{Accept-Encoding} choice for index pages. Pure functions.
"""

from __future__ import annotations

from typing import Optional

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

#: Offers in order of preference when q-values tie.
OFFERS = (JSON_V1, HTML_V1, TEXT_HTML)

_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}


def _parse_q(params: list[str]) -> Optional[float]:
    q = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            if not 0.0 <= q <= 1.0:
                return None
    return q


def parse_accept(header: Optional[str]) -> list[tuple[str, float]]:
    """
    Parse an C{Accept} header into (media range, q) pairs, lowercased.
    Malformed entries are skipped.
    """
    if header is None:
        return [("*/*", 1.0)]
    ranges = []
    for item in header.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        if not media or "/" not in media:
            continue
        q = _parse_q(params)
        if q is None:
            continue
        ranges.append((_LATEST.get(media, media), q))
    return ranges


def _match(offer: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """
    The q-value of C{offer} from the most specific matching range, and that
    range's specificity (2 exact, 1 C{type/*}, 0 C{*/*}, -1 no match).
    """
    best_q, best_spec = 0.0, -1
    major = offer.split("/")[0]
    for media, q in ranges:
        if media == offer:
            spec = 2
        elif media == major + "/*":
            spec = 1
        elif media == "*/*":
            spec = 0
        else:
            continue
        if spec > best_spec:
            best_q, best_spec = q, spec
    return best_q, best_spec


def choose_content_type(
    accept: Optional[str], format_param: Optional[str] = None
) -> Optional[str]:
    """
    Choose the media type of a simple API response.

    @param accept: the request's C{Accept} header, or L{None}.
    @param format_param: the C{?format=} query parameter, which wins over
        C{Accept} when present.
    @return: one of L{OFFERS}, or L{None} when nothing is acceptable (406).
    """
    if format_param is not None:
        wanted = _LATEST.get(format_param.strip().lower(), format_param.strip().lower())
        return wanted if wanted in OFFERS else None
    if accept is None or not accept.strip():
        return TEXT_HTML
    ranges = parse_accept(accept)
    scored = []
    for rank, offer in enumerate(OFFERS):
        q, spec = _match(offer, ranges)
        if spec >= 0 and q > 0:
            scored.append((q, spec > 0, -rank, offer, spec))
    if not scored:
        return None
    scored.sort(reverse=True)
    q, explicit, _, offer, spec = scored[0]
    if spec == 0:
        # Only a bare */* matched: old clients that send it parse HTML.
        return TEXT_HTML
    return offer


def accepts_gzip(header: Optional[str]) -> bool:
    """Whether an C{Accept-Encoding} header admits gzip."""
    if not header:
        return False
    star = None
    for item in header.split(","):
        coding, *params = item.split(";")
        coding = coding.strip().lower()
        q = _parse_q(params)
        if q is None:
            continue
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)
