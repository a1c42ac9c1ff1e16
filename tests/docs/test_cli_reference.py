"""docs/cli.md's option reference is what the code says."""

from __future__ import annotations

from twisted.python import usage

from pypid import docs_cli


def test_cli_md_is_up_to_date():
    current = docs_cli.DOC.read_text(encoding="utf-8")
    assert current == docs_cli.render(current, docs_cli.generated()), (
        f"docs/cli.md is out of date with the options and help texts; run: {docs_cli.COMMAND}"
    )


def test_check_mode_says_what_to_run(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(f"# options\n\n{docs_cli.BEGIN}\nold\n{docs_cli.END}\n")
    monkeypatch.setattr(docs_cli, "DOC", stale)
    assert docs_cli.main(["--check"]) == 1
    assert docs_cli.COMMAND in capsys.readouterr().err
    assert docs_cli.main([]) == 0
    assert docs_cli.main(["--check"]) == 0
    text = stale.read_text()
    assert text.startswith("# options\n\n") and "old" not in text and "`--max-upload-size VALUE`" in text


class Flags(usage.Options):
    optParameters = [["size", "s", "1G", "How big | how <small>."]]
    optFlags = [["quiet", "q", "Say less."]]


class Mixed(Flags):
    def opt_port(self, value):
        """
        Where to
        listen.
        """

    opt_p = opt_port

    def opt_verbose(self):
        """More."""


def test_rows_come_from_every_kind_of_option():
    """Parameters, flags and opt_ methods (with their synonyms), from base classes too."""
    rows = {cell: (default, text) for cell, default, text in docs_cli.option_rows(Mixed())}
    assert rows["`-s`, `--size VALUE`"] == ("`1G`", r"How big \| how \<small\>.")
    assert rows["`-q`, `--quiet`"] == ("off", "Say less.")
    assert rows["`-p`, `--port VALUE`"] == ("", "Where to listen.")
    assert rows["`--verbose`"] == ("", "More.")
    assert "`--help`" in rows


def test_render_needs_the_markers():
    import pytest

    with pytest.raises(ValueError):
        docs_cli.render("no markers here", "body")
