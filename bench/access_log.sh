#!/usr/bin/env bash
# What the access log costs: small project-page requests per CPU-second of
# the server (its user + system time from /proc, so other load on the
# machine does not count), with and without --no-access-log, alternately.
# The server runs on CPU 0 and wrk on CPU 1; the log goes to a file.
#   bench/access_log.sh [ROUNDS]        (needs wrk and taskset)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$top/.venv-test/bin/python}
rounds=${1:-5}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
"$python" - "$work/packages" <<'PY'
import sys
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
for i in range(3):
    write_dist(sys.argv[1], wheel_bytes("demo", f"1.{i}"))
    write_dist(sys.argv[1], sdist_bytes("demo", f"1.{i}"))
PY
port=$((20000 + RANDOM % 20000))
url=http://127.0.0.1:$port/simple/demo/
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "round log requests cpu-ticks requests-per-cpu-second"
for round in $(seq "$rounds"); do
    for mode in on off; do
        extra=(); [ "$mode" = off ] && extra=(--no-access-log)
        PYTHONPATH=$top taskset -c 0 "$(dirname "$python")/twistd" -n --pidfile= pypid \
            --port "tcp:$port:interface=127.0.0.1" "${extra[@]}" "$work/packages" >"$work/log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            "$python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
                "http://127.0.0.1:$port/simple/demo/" 2>/dev/null && break
            sleep 0.1
        done
        taskset -c 1 wrk -t1 -c8 -d2s "$url" >/dev/null
        before=$(cpu "$pid")
        requests=$(taskset -c 1 wrk -t1 -c8 -d8s "$url" | awk '/requests in/ {print $1}')
        after=$(cpu "$pid")
        echo "$round $mode $requests $((after - before))" |
            awk -v k="$ticks" '{printf "%s %s %s %s %.0f\n", $1, $2, $3, $4, $3 / ($4 / k)}'
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
