"""
pypid run: pypiserver's command lines, as its README, its docker-compose
example, systemd units and supervisor programs write them, parse into the
same configuration as the equivalent twistd pypid command line.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from twisted.python import usage

from pypid import tap
from pypid.pypiserver import RunOptions

URL = "http://127.0.0.1:9/simple/"


@pytest.fixture
def place(tmp_path, monkeypatch):
    """
    A home with ~/packages, a password file, a welcome page, and the paths
    the examples name, all under tmp_path; returns a function making an argv
    of a command line in which those paths are replaced.
    """
    home = tmp_path / "home"
    (home / "packages").mkdir(parents=True)
    (tmp_path / "pypi").mkdir()
    (tmp_path / "packages").mkdir()
    for name in ("htpasswd.txt", ".htpasswd", "auth.htpasswd"):
        (tmp_path / name).write_text("alice:{SHA}x\n")
    (tmp_path / "welcome.html").write_text("<p>{{NUMPKGS}}</p>")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    paths = {
        "/var/www/pypi": str(tmp_path / "pypi"),
        "/home/pypi/packages": str(tmp_path / "pypi"),
        "/data/packages": str(tmp_path / "pypi"),
        "/etc/nginx/.htpasswd": str(tmp_path / "auth.htpasswd"),
        "/home/pypi/.htpasswd": str(tmp_path / "auth.htpasswd"),
        "/data/auth/.htpasswd": str(tmp_path / "auth.htpasswd"),
        "/data/.htaccess": str(tmp_path / "auth.htpasswd"),
        "/var/log/pypiserver.log": str(tmp_path / "pypiserver.log"),
    }

    def argv(line: str) -> list[str]:
        words = shlex.split(line)
        return [os.path.expanduser(paths.get(word, word)) for word in words]

    return argv


def run_config(argv: list[str]) -> RunOptions:
    options = RunOptions()
    options.parseOptions(argv)
    return options


def twistd_config(argv: list[str]) -> tap.Config:
    options = tap.Options()
    options.parseOptions(argv)
    return options.config


#: (pypi-server's arguments, the same with twistd pypid), from pypiserver's
#: README, its docker-compose.yml, and the brief of pypid run.
EXAMPLES = [
    # README, quick start
    ("run -p 8080 ~/packages", "--port 8080 ~/packages"),
    # README, uploads
    ("run -p 8080 -P htpasswd.txt ~/packages", "--port 8080 -P htpasswd.txt ~/packages"),
    # README, systemd unit
    ("run -p 8080 -a update,download --log-file /var/log/pypiserver.log -P /etc/nginx/.htpasswd /var/www/pypi",
     "--port 8080 -a update,download -P /etc/nginx/.htpasswd /var/www/pypi"),
    # README, supervisor program
    ("run -p 7001 -P /home/pypi/.htpasswd /home/pypi/packages", "--port 7001 -P /home/pypi/.htpasswd /home/pypi/packages"),
    # README, health endpoint
    ("run --health-endpoint /action/health", "--health-endpoint /action/health"),
    # README, docker run with a password file (the image's working directory holds both)
    ("run -P .htpasswd packages", "-P .htpasswd packages"),
    # the image's own command
    ("run -p 8080 --server gunicorn", "--port 8080"),
    # docker-compose.yml, authenticated
    ("run -P /data/auth/.htpasswd -a update,download,list /data/packages",
     "-P /data/auth/.htpasswd -a update,download,list /data/packages"),
    # docker-compose.yml of pypiserver 1.x, arguments without run
    ("-p 80 -P /data/.htaccess -a update,download,list /data/packages",
     "--port 80 -P /data/.htaccess -a update,download,list /data/packages"),
    # no authentication, the README's way
    ("run -p 8080 -P . -a . ~/packages", "--port 8080 -P . -a . ~/packages"),
    # the brief's full line
    (f"run -p 8080 -i 0.0.0.0 -P htpasswd.txt -a update,download -o --fallback-url {URL} --disable-fallback "
     "--hash-algo sha256 --welcome welcome.html --health-endpoint /health --cache-control 3600 "
     "--log-file pypiserver.log -v ~/packages",
     f"--port tcp:8080:interface=0.0.0.0 -P htpasswd.txt -a update,download -o --fallback-url {URL} "
     "--disable-fallback --hash-algo sha256 --welcome welcome.html --health-endpoint /health "
     "--cache-control 3600 ~/packages"),
    # pypiserver's fallback is a redirect
    (f"run --fallback-url {URL} ~/packages", f"--fallback-url {URL} --fallback-mode redirect ~/packages"),
    (f"run --fallback-url {URL} --fallback-mode cache ~/packages", f"--fallback-url {URL} ~/packages"),
    # options after the directory, as argparse takes them
    ("run ~/packages -p 8080 -o -P htpasswd.txt", "--port 8080 -o -P htpasswd.txt ~/packages"),
    ("run -H 127.0.0.1 -p 3141", "--port tcp:3141:interface=127.0.0.1"),
    ("run --host ::1", "--port 'tcp6:8080:interface=\\:\\:1'"),
    ("run --interface 127.0.0.1 --port 8081 -v -v", "--port tcp:8081:interface=127.0.0.1"),
    # pypid's own options work too
    ("run -p 8080 --metrics --port tcp:8443:interface=127.0.0.1 ~/packages",
     "--port tcp:8443:interface=127.0.0.1 --port 8080 --metrics ~/packages"),
]


@pytest.mark.parametrize("pypiserver, twistd", EXAMPLES, ids=[e[0][:60] for e in EXAMPLES])
def test_same_config_as_twistd(place, pypiserver, twistd):
    argv = place(pypiserver)
    if argv[0] == "run":
        argv = argv[1:]
    assert run_config(argv).config == twistd_config(place(twistd))


def test_log_file_goes_to_twistd(place, tmp_path):
    options = run_config(place("-p 8080 --log-file /var/log/pypiserver.log ~/packages"))
    assert options.log_file == str(tmp_path / "pypiserver.log")
    assert run_config(place("~/packages")).log_file is None


def test_notes_one_line_each(place):
    options = run_config(place("-p 8080 --server gunicorn --backend cached-dir -v -v --log-stream none "
                               "--log-frmt %(message)s --server-base-url / ~/packages"))
    assert options.notes == [
        "note: --server gunicorn is ignored: pypid is its own server (Twisted).",
        "note: --backend cached-dir is ignored: pypid always keeps its index in memory and watches the directories.",
        "note: --verbose is ignored: pypid logs at one level: start-up, errors and a line per request.",
        "note: --log-stream none is ignored: pypid logs to the standard output, or to --log-file.",
        "note: --log-frmt %(message)s is ignored: pypid's log lines have their own format "
        "(--log-format json for JSON).",
        "note: --server-base-url / is ignored: pypid serves at the root already.",
        "note: no fallback: pypiserver would send projects it does not have to the public index, pypid names "
        "no upstream (give --fallback-url URL, or --disable-fallback).",
    ]
    assert run_config(place(f"--fallback-url {URL} ~/packages")).notes == []
    assert run_config(place("--disable-fallback ~/packages")).notes == []


@pytest.mark.parametrize("line, message", [
    ("--bogus ~/packages", "option --bogus not recognized"),
    ("-U ~/packages", "option -U not recognized"),
    ("--server-base-url /prefix/ ~/packages", "--server-base-url '/prefix/': pypid serves at the root"),
    ("-p 8080 -a . ~/packages", "the password file must be '.' too"),
    ("--hash-algo sha1 ~/packages", "--hash-algo 'sha1' is not one of"),
])
def test_refusals(place, line, message):
    error = pytest.raises(usage.UsageError, run_config, place(line)).value
    assert message in str(error)
    assert "\n" not in str(error)


def test_help_lists_the_mapping(capsys):
    with pytest.raises(SystemExit) as exit:
        RunOptions().parseOptions(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: pypid run [options] [PACKAGE_DIR ...]\n")
    for text in ("-i, --interface=", "-H, --host=", "--server=", "--log-file=", "pypiserver's options, as pypid run",
                 "--fallback-mode redirect, where twistd pypid's default is cache",
                 "No default --fallback-url"):
        assert text in out


def test_migration_table_in_the_docs(place):
    """Each row of docs/pypiserver.md's table: the pypid run line parses as the twistd line."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "pypiserver.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `pypi-server")]
    assert len(rows) >= 6
    for row in rows:
        cells = [cell.strip().strip("`") for cell in row.strip("|").split("|")]
        pypiserver, pypid_run, twistd = cells[:3]
        assert pypid_run == pypiserver.replace("pypi-server run", "pypid run", 1), row
        assert twistd.startswith("twistd -n "), row
        run = run_config(place(pypid_run)[2:])
        words = place(twistd)
        assert run.config == twistd_config(words[words.index("pypid") + 1:]), row
        twistd_own = words[2:words.index("pypid")]
        assert twistd_own == (["--logfile", run.log_file] if run.log_file else []), row
