from twisted.trial.unittest import SynchronousTestCase

from pypid.index.negotiate import HTML_V1, JSON_V1, TEXT_HTML, accepts_gzip, choose_content_type

# The negotiation table of the standards checklist (§2.2).
TABLE = [
    (None, TEXT_HTML),
    ("", TEXT_HTML),
    ("*/*", TEXT_HTML),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01", JSON_V1),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01", JSON_V1),
    ("application/vnd.pypi.simple.v1+json, */*;q=0.1", JSON_V1),
    ("application/vnd.pypi.simple.v1+json", JSON_V1),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, text/html;q=0.01", JSON_V1),
    ("application/vnd.pypi.simple.v1+html, text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.1", HTML_V1),
    ("application/vnd.pypi.simple.v1+html", HTML_V1),
    ("text/html", TEXT_HTML),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", TEXT_HTML),
    ("application/vnd.pypi.simple.latest+json", JSON_V1),
    ("application/vnd.pypi.simple.latest+html", HTML_V1),
    ("application/vnd.pypi.simple.v1+json;q=0, text/html", TEXT_HTML),
    ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", JSON_V1),
    ("application/vnd.pypi.simple.v2+json", None),
    ("application/json", None),
    ("text/*;q=0", None),
    ("text/*", TEXT_HTML),
]


class NegotiationTests(SynchronousTestCase):
    def test_table(self):
        """Each Accept header of the checklist gets the expected media type, or 406 (None)."""
        for accept, expected in TABLE:
            self.assertEqual(choose_content_type(accept), expected, accept)

    def test_format_parameter_wins(self):
        """?format= overrides Accept; only an exact supported type is accepted."""
        self.assertEqual(choose_content_type("text/html", JSON_V1), JSON_V1)
        self.assertEqual(choose_content_type(None, "application/vnd.pypi.simple.latest+html"), HTML_V1)
        self.assertIsNone(choose_content_type(None, "*/*"))

    def test_malformed_entries_skipped(self):
        self.assertEqual(choose_content_type("garbage, text/html;q=abc, application/vnd.pypi.simple.v1+json"), JSON_V1)

    def test_gzip(self):
        self.assertTrue(accepts_gzip("gzip, deflate, zstd"))
        self.assertTrue(accepts_gzip("br;q=1.0, gzip;q=0.8"))
        self.assertTrue(accepts_gzip("*"))
        self.assertFalse(accepts_gzip("gzip;q=0"))
        self.assertFalse(accepts_gzip("identity"))
        self.assertFalse(accepts_gzip(None))
