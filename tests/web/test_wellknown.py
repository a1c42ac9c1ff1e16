import struct

from twisted.trial.unittest import SynchronousTestCase

from pypid.index.people import projects_page
from pypid.index.welcome import render_welcome
from pypid.web.wellknown import icon, robots


class IconTests(SynchronousTestCase):
    def test_one_16_pixel_image_with_alpha(self):
        data = icon()
        self.assertEqual(struct.unpack("<HHH", data[:6]), (0, 1, 1))
        width, height, _, _, planes, bits, size, offset = struct.unpack("<BBBBHHII", data[6:22])
        self.assertEqual((width, height, planes, bits), (16, 16, 1, 32))
        self.assertEqual(offset + size, len(data))
        header = struct.unpack("<IiiHHI", data[offset:offset + 20])
        self.assertEqual(header, (40, 16, 32, 1, 32, 0))


class RobotsTests(SynchronousTestCase):
    def test_machine_pages_disallowed(self):
        lines = robots().decode().splitlines()
        for path in ("/simple/", "/packages/", "/pypi/", "/search", "/+upstream/"):
            self.assertIn(f"Disallow: {path}", lines)

    def test_prefix(self):
        self.assertIn("Disallow: /index/simple/", robots("/index").decode().splitlines())


class CountedNounsTests(SynchronousTestCase):
    def test_welcome(self):
        page = render_welcome("http://x/", 1, 1).decode()
        self.assertIn("<strong>1</strong> project in <strong>1</strong> file.", page)
        page = render_welcome("http://x/", 2, 0).decode()
        self.assertIn("<strong>2</strong> projects in <strong>0</strong> files.", page)

    def test_projects_page(self):
        self.assertIn("<p>0 projects.</p>", projects_page([]).decode())
