"""
The welcome page at C{/}: what the index holds and copy-ready client
configuration, built from the URL the visitor used. Pure.
"""

from __future__ import annotations

import re
from html import escape

from pypid import __version__
from pypid.counts import plural
from pypid.index.people import layout


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
        "<h1>pypid package index</h1>\n",
        f"<p>This index holds <strong>{projects}</strong> {plural(projects, 'project')} in "
        f"<strong>{files}</strong> {plural(files, 'file')}.</p>\n",
        '<p>Browse <a href="project/">all projects</a>, the <a href="simple/">simple index</a> '
        'or the <a href="packages/">list of files</a>.</p>\n',
    ]
    for title, text in sections:
        body.append(f"<h2>{title}</h2>\n<pre>{escape(text)}</pre>\n")
    return layout("pypid package index", "", "", body)


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
