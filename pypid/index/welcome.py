"""
The welcome page at C{/}: what the index holds and copy-ready client
configuration, built from the URL the visitor used. Pure.
"""

from __future__ import annotations

import re
from html import escape

from pypid import __version__

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;
line-height:1.45;color:#1d1d1f}
h1{margin-bottom:.2rem}h2{margin-top:2rem;font-size:1.15rem}
pre{background:#f4f4f6;border:1px solid #ddd;border-radius:6px;padding:.7rem 1rem;overflow-x:auto}
.muted{color:#666}a{color:#0a58ca}
input[type=search]{padding:.3rem .5rem;width:18rem;font-size:1rem}button{padding:.3rem .8rem;font-size:1rem}
"""


def render_welcome(
    base: str, projects: int, files: int, uploads: bool = False
) -> bytes:
    """
    The default welcome page.

    @param base: the index root URL as the visitor reached it, ending in C{/}.
    @param uploads: whether HTTP uploads are enabled (shows C{.pypirc}).
    """
    simple = f"{base}simple/"
    host = re.sub(r"^https?://", "", base).split("/")[0].rsplit(":", 1)[0].strip("[]")
    trusted = "" if base.startswith("https:") or host in ("localhost", "127.0.0.1", "::1") else (
        f"\ntrusted-host = {host}"
    )
    sections = [
        ("pip: one command", f"pip install --index-url {simple} PROJECT"),
        ("pip: <code>pip.conf</code> (or <code>pip.ini</code>)", f"[global]\nindex-url = {simple}{trusted}"),
        (
            "uv: <code>uv.toml</code> (or <code>[[tool.uv.index]]</code> in <code>pyproject.toml</code>)",
            f'[[index]]\nname = "pypid"\nurl = "{simple}"\ndefault = true',
        ),
        ("uv: one command", f"uv pip install --index-url {simple} PROJECT"),
        ("poetry", f"poetry source add --priority=primary pypid {simple}"),
    ]
    if uploads:
        sections.append(
            (
                "twine: <code>~/.pypirc</code>",
                "[distutils]\nindex-servers =\n    pypid\n\n"
                f"[pypid]\nrepository = {base}\nusername = USER\npassword = PASSWORD",
            )
        )
        sections.append(("then", "twine upload -r pypid dist/*"))
    body = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>pypid package index</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        "<h1>pypid package index</h1>\n",
        f'<p class="muted">pypid {escape(__version__)}</p>\n',
        f"<p>This index holds <strong>{projects}</strong> projects in "
        f"<strong>{files}</strong> files.</p>\n",
        '<form action="search" method="get" role="search"><input type="search" name="q" '
        'placeholder="Search projects" aria-label="Search projects"> '
        '<button type="submit">Search</button></form>\n',
        '<p>Browse <a href="project/">all projects</a>, the <a href="simple/">simple index</a> '
        'or the <a href="packages/">list of files</a>.</p>\n',
    ]
    for title, text in sections:
        body.append(f"<h2>{title}</h2>\n<pre>{escape(text)}</pre>\n")
    body.append("</body>\n</html>\n")
    return "".join(body).encode("utf-8")


def render_template(template: str, base: str, files: int) -> bytes:
    """
    A user's C{--welcome} file with pypiserver's variables filled in:
    C{{{URL}}}, C{{{VERSION}}}, C{{{NUMPKGS}}}, C{{{PACKAGES}}}, C{{{SIMPLE}}}.
    """
    values = {
        "URL": escape(base),
        "VERSION": escape(__version__),
        "NUMPKGS": str(files),
        "PACKAGES": "packages/",
        "SIMPLE": "simple/",
    }
    return re.sub(
        r"\{\{\s*(URL|VERSION|NUMPKGS|PACKAGES|SIMPLE)\s*\}\}",
        lambda m: values[m.group(1)],
        template,
    ).encode("utf-8")
