"""Every help text reads as plain text: no epytext markup, no stray spaces."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from pypid import cli, tap

EPYTEXT = re.compile(r"\b[BCILU]\{")
#: Two words with more than one space between them.
GAP = re.compile(r"\S {2,}\S")


def help_of(argv: list[str]) -> str:
    """What C{pypid ARGV} prints, for a command that prints help and ends well."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
    assert code in (0, None), out.getvalue()
    return out.getvalue()


def option_classes():
    from pypid.pypiserver import RunOptions

    return [tap.Options, RunOptions]


@pytest.mark.parametrize("options_class", option_classes())
def test_option_texts_are_plain(options_class):
    """Each option's help, the synopsis and the description: one plain line of text."""
    options = options_class()
    texts = dict(options.docs)
    texts["(longdesc)"] = options.longdesc
    texts["(synopsis)"] = options.synopsis
    for name, text in texts.items():
        assert not EPYTEXT.search(text), (name, text)
        assert "  " not in text.strip() and "\n" not in text.strip(), (name, text)


@pytest.mark.parametrize("options_class", option_classes())
def test_rendered_option_help_is_plain(options_class):
    """As --help prints it: the column between option and text is the only run of spaces."""
    rendered = str(options_class())
    assert not EPYTEXT.search(rendered)
    for line in rendered.splitlines():
        assert len(GAP.findall(line)) <= 1, line


@pytest.mark.parametrize("argv", [["--help"], ["passwd", "--help"], ["git-init", "--help"],
                                  ["update", "--help"], ["mirror", "--help"], ["run", "--help"],
                                  ["serve", "--help"]])
def test_command_help_is_plain(argv):
    text = help_of(argv)
    assert not EPYTEXT.search(text), text
    for line in text.splitlines():
        assert len(GAP.findall(line)) <= 1, line

