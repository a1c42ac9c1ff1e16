"""
Helpers that run blocks have on their PATH:

    mkdist DIR NAME [VERSION]          a wheel and an sdist of a small project
    poetry-project NAME VERSION        a pyproject.toml that poetry publishes from
"""

from __future__ import annotations

import sys

from pypid.testing import sdist_bytes, wheel_bytes, write_dist


def mkdist(directory: str, name: str, version: str = "1.0") -> None:
    write_dist(directory, wheel_bytes(name, version, summary=f"The {name} project"))
    write_dist(directory, sdist_bytes(name, version, summary=f"The {name} project"))


def poetry_project(name: str, version: str) -> None:
    with open("pyproject.toml", "w") as f:
        f.write(
            "[tool.poetry]\n"
            f'name = "{name}"\nversion = "{version}"\n'
            f'description = "The {name} project"\nauthors = ["Doc Test <doc@localhost>"]\n'
        )


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "mkdist":
        mkdist(*args)
    elif command == "poetry-project":
        poetry_project(*args)
    else:
        print(f"unknown fixture {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
