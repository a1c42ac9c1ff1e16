"""The streaming multipart/form-data parser, including property tests."""

from __future__ import annotations

import io

from hypothesis import assume, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.multipart import (
    MultipartError,
    MultipartParser,
    PartHeaders,
    boundary_of,
    parse_part_headers,
    read_form,
)

BOUNDARY = b"----pypid-test-boundary-1234"


def boundary_safe(parts):
    """A client picks a boundary that is in none of its parts (RFC 2046 5.1.1)."""
    return all(b"\r\n--" + BOUNDARY not in b"\r\n" + data for _, _, data in parts)


def encode(parts, boundary=BOUNDARY, preamble=b"", epilogue=b"\r\n"):
    """Build a body: parts are (name, filename or None, bytes)."""
    out = [preamble + b"\r\n" if preamble else b""]
    for name, filename, data in parts:
        out.append(b"--" + boundary + b"\r\n")
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(f"Content-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + boundary + b"--" + epilogue)
    return b"".join(out)


class Collect:
    def __init__(self):
        self.files = {}

    def open(self, headers):
        buffer = io.BytesIO()
        self.files.setdefault(headers.name, []).append((headers.filename, buffer))
        return buffer


def parse(body, chunk_size=7, boundary=BOUNDARY):
    collect = Collect()
    form = read_form(io.BytesIO(body).read, boundary, collect.open, chunk_size=chunk_size)
    files = {name: [(fn, b.getvalue()) for fn, b in parts] for name, parts in collect.files.items()}
    return form.fields, files


def expected(parts):
    fields, files = {}, {}
    for name, filename, data in parts:
        if filename is None:
            fields.setdefault(name, []).append(data.decode())
        else:
            files.setdefault(name, []).append((filename, data))
    return fields, files


class ParserTests(SynchronousTestCase):
    def test_twine_shaped_body(self):
        parts = [
            (":action", None, b"file_upload"),
            ("name", None, "Demo-Pkg".encode()),
            ("summary", None, "caf\u00e9".encode()),
            ("classifiers", None, b"A"),
            ("classifiers", None, b"B"),
            ("content", "demo_pkg-1.0.tar.gz", b"\x00\r\n--\r\n" * 1000),
        ]
        for size in (1, 3, 64, 1 << 20):
            self.assertEqual(parse(encode(parts), size), expected(parts))

    def test_preamble_epilogue_and_padding(self):
        body = (b"ignored preamble\r\n--" + BOUNDARY + b"  \t\r\n"
                b'Content-Disposition: form-data; name="a"\r\n\r\nx\r\n--' + BOUNDARY + b"--junk")
        self.assertEqual(parse(body), ({"a": ["x"]}, {}))

    def test_empty_field_and_empty_headers_refused(self):
        body = encode([("a", None, b"")])
        self.assertEqual(parse(body), ({"a": [""]}, {}))
        body = b"--" + BOUNDARY + b"\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n"
        self.assertRaises(MultipartError, parse, body)

    def test_truncated(self):
        body = encode([("content", "a.whl", b"x" * 1000)])
        for cut in (0, 10, 60, 500, len(body) - 4):
            self.assertRaises(MultipartError, parse, body[:cut])

    def test_headers_too_large(self):
        body = b"--" + BOUNDARY + b"\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\nx\r\n--" + BOUNDARY + b"--"
        self.assertRaises(MultipartError, parse, body)

    def test_no_crlf_after_boundary(self):
        self.assertRaises(MultipartError, parse, b"--" + BOUNDARY + b"xx\r\n")

    def test_quoted_parameters(self):
        headers = parse_part_headers(
            b'Content-Disposition: form-data; name="con;tent"; filename="a\\"b.whl"\r\nContent-Type: x/y'
        )
        self.assertEqual(headers, PartHeaders('con;tent', 'a"b.whl', "x/y"))
        headers = parse_part_headers(
            b"content-disposition: form-data; name=content; filename*=UTF-8''caf%C3%A9.whl"
        )
        self.assertEqual(headers.filename, "caf\u00e9.whl")

    def test_bad_part_headers(self):
        for block in (b"", b"Content-Type: x", b"Content-Disposition: attachment; name=a",
                      b"Content-Disposition: form-data", b"no colon",
                      b'Content-Disposition: form-data; name="open'):
            self.assertRaises(MultipartError, parse_part_headers, block)

    def test_boundary_of(self):
        self.assertEqual(boundary_of(b'multipart/form-data; boundary="a b"'), b"a b")
        self.assertEqual(boundary_of(b"Multipart/Form-Data;boundary=xyz"), b"xyz")
        for value in (b"text/plain", b"multipart/form-data", b"multipart/form-data; boundary="):
            self.assertRaises(MultipartError, boundary_of, value)

    def test_text_limit(self):
        from pypid.feed.multipart import Limits

        body = encode([("a", None, b"x" * 100)])
        self.assertRaises(MultipartError, read_form, io.BytesIO(body).read, BOUNDARY,
                          Collect().open, Limits(text_bytes=10))
        body = encode([("a", None, b"x")] * 5)
        self.assertRaises(MultipartError, read_form, io.BytesIO(body).read, BOUNDARY,
                          Collect().open, Limits(parts=3))


names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters='"\\'),
                min_size=1, max_size=12)
tricky = st.sampled_from([b"\r\n", b"--", b"\r\n--", b"\r", b"\n", b"--" + BOUNDARY[:5],
                          b"\r\n--" + BOUNDARY[:-1], b"\x00", b"\xff"])
payload = st.lists(st.one_of(st.binary(max_size=40), tricky), max_size=12).map(b"".join)
text_payload = st.text(max_size=30).map(lambda s: s.encode("utf-8"))
part = st.one_of(
    st.tuples(names, st.none(), text_payload),
    st.tuples(names, names, payload),
)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(part, max_size=6), st.integers(1, 50), st.binary(max_size=20))
    def test_round_trip_any_chunking(self, parts, chunk, preamble):
        """Whatever the parts and however the body is cut, the parser gives them back."""
        assume(b"--" + BOUNDARY not in b"\r\n" + preamble)
        assume(boundary_safe(parts))
        body = encode(parts, preamble=preamble)
        self.assertEqual(parse(body, chunk), expected(parts))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(part, min_size=1, max_size=4), st.integers(1, 50), st.data())
    def test_any_truncation_is_an_error(self, parts, chunk, data):
        assume(boundary_safe(parts))
        body = encode(parts, epilogue=b"")
        cut = data.draw(st.integers(0, len(body) - 1))
        self.assertRaises(MultipartError, parse, body[:cut], chunk)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.one_of(st.binary(max_size=30), tricky,
                              st.sampled_from([b"--" + BOUNDARY, b"--" + BOUNDARY + b"--",
                                               b"Content-Disposition: form-data; name=x",
                                               b'; filename="f"', b"\r\n\r\n"])),
                    max_size=20).map(b"".join),
           st.integers(1, 64))
    def test_random_bodies_only_ever_raise_multipart_error(self, body, chunk):
        try:
            parse(body, chunk)
        except MultipartError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
    def test_push_parser_chunk_boundaries_do_not_matter(self, body, cuts):
        """Feeding the same bytes in different pieces gives the same events."""
        def run(pieces):
            events = []
            p = MultipartParser(b"xy", lambda h: events.append(("b", h)),
                                lambda d: events.append(("d", d)), lambda: events.append(("e",)))
            try:
                for piece in pieces:
                    p.feed(piece)
                p.close()
                events.append("closed")
            except MultipartError:
                events.append("error")
            # Merge adjacent data events: their split may differ.
            merged = []
            for ev in events:
                if merged and ev[0] == "d" and merged[-1][0] == "d":
                    merged[-1] = ("d", merged[-1][1] + ev[1])
                else:
                    merged.append(ev)
            return merged
        body = b"--xy\r\n" + body
        points = sorted(set(c for c in cuts if c < len(body)))
        pieces, last = [], 0
        for c in points:
            pieces.append(body[last:c])
            last = c
        pieces.append(body[last:])
        self.assertEqual(run(pieces), run([body]))
