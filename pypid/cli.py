"""
The C{pypid} command: C{pypid serve} runs the server in the foreground (the
same as C{twistd -n pypid}), C{pypid run} does it from pypiserver's command
line; other subcommands are administration tools.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

USAGE = """\
usage: pypid COMMAND [ARGS]

commands:
  serve [OPTIONS] [DIR ...]   run the index in the foreground (twistd -n pypid);
                              'pypid serve --help' lists the options
  run [OPTIONS] [DIR ...]     the same, from pypiserver's 'pypi-server run'
                              command line; 'pypid run --help' maps it
  passwd [-c] [-D] [--password-stdin] FILE USER
                              add, update (bcrypt) or delete (-D) a user of the
                              htpasswd file given to -P; -c creates the file
  git-init [--branch BRANCH] BARE_REPO PACKAGE_DIR
                              make 'git push' to BARE_REPO check the branch out
                              into PACKAGE_DIR (deletions included)
  update [-x] [--pre] PACKAGE_DIR ... --fallback-url URL
                              report newer upstream versions of the local
                              projects; -x downloads them, hash-checked
  mirror -r REQUIREMENTS [--platform P] [--python-version V] [--index-url URL] DIR
                              download a requirements set and its dependencies
                              into DIR (pip download), ready to serve
  yank [--url URL] [-u USER] [--reason TEXT] PROJECT VERSION|FILENAME ...
                              yank a release or files (PEP 592) through the
                              running index; 'unyank' undoes it
  token create|list|revoke [--file FILE] ...
                              API tokens of the file given to --tokens
  store import|export|fsck ... --store s3://BUCKET/PREFIX --catalog URL
                              put a directory's files into the replicas' object
                              store and catalog (--watch: keep doing it), write
                              them back out, or check store against catalog
  catalog migrate --catalog URL
                              bring the replicas' catalog schema up to date
  version                     print pypid's version
"""


def serve(argv: list[str]) -> int:
    """Run C{twistd --nodaemon --pidfile= pypid ARGV} in this process."""
    from pypid import tap

    return _foreground("pypid serve", tap.Options, argv)


def run(argv: list[str]) -> int:
    """
    Run pypid in the foreground from pypiserver's C{run} command line
    (L{pypid.pypiserver.RunOptions}).
    """
    from pypid.pypiserver import RunOptions

    return _foreground("pypid run", RunOptions, argv)


def _foreground(command: str, options_class, argv: list[str]) -> int:
    """Run twistd in this process, in the foreground, with C{options_class} as pypid's options."""
    from twisted.application import app
    from twisted.application.service import ServiceMaker
    from twisted.scripts import twistd

    from pypid import tap

    def make_options():
        options = options_class()
        options.command = command
        return options

    class ServerOptions(twistd.ServerOptions):
        # Offer the plugin directly, so that it works even where plugin
        # discovery cannot see it (editable installs).
        @property
        def subCommands(self):  # type: ignore[override]
            maker = ServiceMaker("pypid", "pypid.tap", "A private Python package index", "pypid")
            return [(maker.tapname, None, make_options, maker.description)]

        def postOptions(self):
            options = self.subOptions
            if getattr(options, "log_file", None):
                self["logfile"] = options.log_file
            for note in getattr(options, "notes", ()):
                sys.stderr.write(f"{command}: {note}\n")
            super().postOptions()
            self.loadedPlugins = {"pypid": _Maker()}

    class _Maker:
        tapname = "pypid"

        @staticmethod
        def makeService(options):
            return tap.makeService(options)

    sys.argv = [command, "--nodaemon", "--pidfile=", "pypid", *argv]
    app.run(twistd.runApp, ServerOptions)
    return 0


def passwd(argv: list[str]) -> int:
    from pypid.auth.passwd import main as passwd_main

    return passwd_main(argv)


def git_init(argv: list[str]) -> int:
    from pypid.feed.gitinit import main as git_init_main

    return git_init_main(argv)


def update(argv: list[str]) -> int:
    from pypid.feed.update import main as update_main

    return update_main(argv)


def mirror(argv: list[str]) -> int:
    from pypid.feed.mirror import main as mirror_main

    return mirror_main(argv)


def yank(argv: list[str]) -> int:
    from pypid.feed.yankcli import main as yank_main

    return yank_main("yank", argv)


def unyank(argv: list[str]) -> int:
    from pypid.feed.yankcli import main as yank_main

    return yank_main("unyank", argv)


def token(argv: list[str]) -> int:
    from pypid.auth.tokencli import main as token_main

    return token_main(argv)


def store(argv: list[str]) -> int:
    from pypid.store.objectstore.admin import store_main

    return store_main(argv)


def catalog(argv: list[str]) -> int:
    from pypid.store.objectstore.admin import catalog_main

    return catalog_main(argv)


def version(argv: list[str]) -> int:
    from pypid import __version__

    print(__version__)
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "serve": serve,
    "run": run,
    "passwd": passwd,
    "git-init": git_init,
    "update": update,
    "mirror": mirror,
    "yank": yank,
    "unyank": unyank,
    "token": token,
    "store": store,
    "catalog": catalog,
    "version": version,
}


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        return version([])
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"pypid: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
