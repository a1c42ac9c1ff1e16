# Shared by scripts/serve and scripts/test: make sure a virtualenv exists at
# $1 with pypid's dependencies, the checkout on its path (a .pth file, so that
# twistd sees the plugin in twisted/plugins/), a `pypid` command, and the
# requirement files given after it. Re-installs only when inputs change.
# Usage: ensure_venv DIR [pip install arguments...]

pick_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "pypid needs Python 3.11 or newer (python3)." >&2
    return 1
}

ensure_venv_module() {
    local py=$1
    "$py" -c 'import ensurepip, venv' 2>/dev/null && return 0
    # Debian's python3 ships venv support separately.
    local pkg
    pkg="python3-venv"
    echo "==> $py cannot create virtualenvs; installing $pkg with apt" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq "$pkg"
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "$pkg"
    fi
}

# The `pypid` command of the virtualenv $1: the console script an install
# would make, written here because the checkout is not installed.
write_pypid_command() {
    local venv=$1
    printf '%s\n' "#!$venv/bin/python" \
        "# pypid's command, for the checkout on this virtualenv's path (scripts/venv.sh)." \
        "import sys" "from pypid.cli import main" "sys.exit(main())" > "$venv/bin/pypid.tmp" &&
        chmod 755 "$venv/bin/pypid.tmp" && mv -f "$venv/bin/pypid.tmp" "$venv/bin/pypid"
}

ensure_venv() {
    local venv=$1; shift
    local top py stamp want
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    py=$(pick_python) || return 1
    stamp="$venv/.pypid-stamp"
    local inputs=("$top/setup.cfg" "$top/pyproject.toml") arg
    for arg in "$@"; do [ -f "$arg" ] && inputs+=("$arg"); done
    want="$(cat "${inputs[@]}" | sha256sum | cut -c1-32) $*"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        write_pypid_command "$venv"
        return
    fi
    ensure_venv_module "$py" || return 1
    echo "==> setting up $venv" >&2
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip || return 1
    # pypid's dependencies from setup.cfg, then the checkout itself on the
    # path through a .pth file: twistd finds twisted/plugins/ there, which an
    # editable install would hide from it.
    local deps
    deps=$("$venv/bin/python" - "$top/setup.cfg" <<'PY'
import configparser, sys
config = configparser.ConfigParser()
config.read(sys.argv[1])
print("\n".join(line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()))
PY
    ) || return 1
    local -a reqs
    mapfile -t reqs <<< "$deps"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}" "$@" || return 1
    "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' |
        { read -r site; echo "$top" > "$site/pypid-checkout.pth"; } || return 1
    write_pypid_command "$venv" || return 1
    echo "$want" > "$stamp"
}
