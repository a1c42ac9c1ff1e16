"""
C{pypid mirror -r requirements.txt [--platform P ...] [--python-version V]
[--index-url URL] DIR}: fill a package directory with a requirements set and
all its dependencies, for a site without internet access, by running
C{pip download}. The directory can then be served by pypid as it is, or
used with C{pip install --no-index --find-links DIR}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from pypid.index.filenames import parse_filename


def pip_command(args: argparse.Namespace) -> list[str]:
    """The C{pip download} command line for C{args} (pure)."""
    command = [args.pip or sys.executable, "-m", "pip", "download", "--dest", args.directory,
               "--progress-bar", "off"]
    for requirements in args.requirement:
        command += ["-r", requirements]
    command += args.packages
    if args.index_url:
        command += ["--index-url", args.index_url]
    for platform in args.platform:
        command += ["--platform", platform]
    if args.python_version:
        command += ["--python-version", args.python_version]
    if args.implementation:
        command += ["--implementation", args.implementation]
    if args.abi:
        for abi in args.abi:
            command += ["--abi", abi]
    if args.platform or args.python_version or args.implementation or args.abi:
        # pip refuses to build sdists for another interpreter or platform.
        command += ["--only-binary", ":all:"]
    if args.pre:
        command.append("--pre")
    extra: list[str] = args.pip_args
    return command + extra


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pypid mirror",
        description="Download a requirements set and all its dependencies into DIR (pip download).",
        epilog="Arguments after '--' go to pip download as they are.")
    parser.add_argument("directory", metavar="DIR")
    parser.add_argument("packages", nargs="*", metavar="REQUIREMENT")
    parser.add_argument("-r", "--requirement", action="append", default=[], help="requirements file (repeatable)")
    parser.add_argument("--index-url", "--fallback-url", "-i", dest="index_url",
                        help="the index to download from (default: pip's configuration)")
    parser.add_argument("--platform", action="append", default=[],
                        help="wheel platform tag, e.g. manylinux2014_x86_64 (repeatable; binaries only)")
    parser.add_argument("--python-version", help="e.g. 3.11 (binaries only)")
    parser.add_argument("--implementation", help="e.g. cp (binaries only)")
    parser.add_argument("--abi", action="append", help="e.g. cp311 (repeatable; binaries only)")
    parser.add_argument("--pre", action="store_true", help="allow pre-releases")
    parser.add_argument("--pip", help="Python interpreter whose pip to run (default: this one)")
    argv = list(argv)
    pip_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pip_args = argv[:at], argv[at + 1:]
    args = parser.parse_args(argv)
    args.pip_args = pip_args
    if not args.requirement and not args.packages:
        parser.error("give requirements: -r FILE and/or REQUIREMENT arguments")
    os.makedirs(args.directory, exist_ok=True)
    command = pip_command(args)
    print("running " + " ".join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        print(f"pypid mirror: pip download failed ({result.returncode})", file=sys.stderr)
        return result.returncode
    unlisted = [n for n in sorted(os.listdir(args.directory))
                if os.path.isfile(os.path.join(args.directory, n)) and parse_filename(n) is None]
    listed = [n for n in sorted(os.listdir(args.directory)) if parse_filename(n) is not None]
    print(f"{len(listed)} distribution files in {args.directory}")
    for name in unlisted:
        print(f"warning: {name} is not a distribution pypid would list", file=sys.stderr)
    return 0
