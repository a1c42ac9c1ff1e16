"""
The object store's S3 client against a real SeaweedFS (tests/realservers.py):
round trips of every operation, streaming without holding objects in
memory, presigned URLs, and the one-line errors of a wrong configuration.
Credentials come through botocore's real chain (environment, shared
credentials file), isolated from the machine's by the C{s3_env} fixture.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.interfaces import IConsumer
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from tests.process.conftest import need_module
from tests.realservers import free_port

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")

from pypid.store.objectstore.s3 import (  # noqa: E402
    ObjectNotFound,
    RangeNotSatisfiable,
    S3Client,
    S3Error,
    S3Location,
    StoreUnreachable,
    TransferInterrupted,
)

MiB = 1024 * 1024


def location(server, prefix: str = "t", bucket: str | None = None, endpoint: str | None = None) -> S3Location:
    return S3Location.from_options(f"s3://{bucket or server.bucket}/{prefix}", endpoint or server.endpoint)


async def client(server, **kwargs) -> S3Client:
    return await S3Client.connect(location(server, **kwargs), reactor=reactor)


def rss() -> int:
    """This process's resident set, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssPeak:
    """The highest RSS seen, sampled every 20 ms on the reactor while a transfer runs."""

    def __init__(self) -> None:
        self.start = rss()
        self.peak = self.start
        self._loop = task.LoopingCall(self._sample)
        self._loop.start(0.02)

    def _sample(self) -> None:
        self.peak = max(self.peak, rss())

    def stop(self) -> int:
        self._sample()
        self._loop.stop()
        return self.peak - self.start


@implementer(IConsumer)
class Consumer:
    """
    Hashes what it is given. With C{pause_every}, it pauses its producer
    after that many bytes and resumes it C{delay} seconds later, like a
    slow client; with C{hold}, it pauses after the first write and stays
    paused until L{resume} is called.
    """

    def __init__(self, pause_every: int = 0, delay: float = 0.001, hold: bool = False) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.producer = None
        self.pause_every = pause_every
        self.delay = delay
        self.hold = hold
        self.paused = False
        self._since = 0
        self.registered = 0

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer
        self.registered += 1

    def unregisterProducer(self):
        self.producer = None

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self._since += len(data)
        if self.hold and not self.paused:
            self.paused = True
            self.producer.pauseProducing()
        elif self.pause_every and self._since >= self.pause_every and not self.paused:
            self._since = 0
            self.paused = True
            self.producer.pauseProducing()
            reactor.callLater(self.delay, self.resume)

    def resume(self) -> None:
        self.paused = False
        self.hold = False
        if self.producer is not None:
            self.producer.resumeProducing()


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


async def fetch(s3: S3Client, key: str, byte_range=None) -> tuple[bytes, object]:
    body = await s3.open(key, byte_range)
    chunks = []

    @implementer(IConsumer)
    class Collect:
        def registerProducer(self, producer, streaming):
            pass

        def unregisterProducer(self):
            pass

        def write(self, data):
            chunks.append(data)

    written = await body.deliver(Collect())
    data = b"".join(chunks)
    assert written == len(data)
    return data, body


# -- round trips ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_put_get_head_delete_round_trip_with_awkward_keys(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="team/round")
    keys = ["demo-1.0.tar.gz", "Demo Pkg/x+y=z~1.whl", "été/naïve-2.0-py3-none-any.whl", "a/b/c.metadata"]
    for n, key in enumerate(keys):
        path = tmp_path / f"f{n}"
        payload = f"payload {n} {key}".encode() * 100
        path.write_bytes(payload)
        etag = await s3.put_file(key, str(path))
        assert etag
        info = await s3.head(key)
        assert (info.key, info.size, info.etag) == (key, len(payload), etag)
        assert abs(info.last_modified - time.time()) < 120
        data, body = await fetch(s3, key)
        assert data == payload
        assert body.info.size == len(payload) and body.content_range is None
        # What the store holds, seen apart from the client under test.
        assert seaweedfs.object_sha256("team/round/" + key.replace(" ", "%20").replace("+", "%2B")
                                       .replace("=", "%3D").replace("é", "%C3%A9").replace("ï", "%C3%AF")) \
            == hashlib.sha256(payload).hexdigest()
    listed = await s3.list_all()
    assert sorted(o.key for o in listed) == sorted(keys)
    for key in keys:
        await s3.delete(key)
        assert await s3.head(key) is None
    assert await s3.list_all() == []
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_put_bytes_and_empty_objects(seaweedfs, s3_env):
    s3 = await client(seaweedfs, prefix="bytes")
    await s3.put_bytes("sig.asc", b"-----BEGIN PGP SIGNATURE-----\n", "text/plain")
    await s3.put_bytes("empty", b"")
    data, body = await fetch(s3, "sig.asc")
    assert data == b"-----BEGIN PGP SIGNATURE-----\n"
    assert body.info.content_type == "text/plain"
    data, body = await fetch(s3, "empty")
    assert data == b"" and body.info.size == 0
    assert (await s3.head("empty")).size == 0
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_missing_objects(seaweedfs, s3_env):
    s3 = await client(seaweedfs, prefix="missing")
    assert await s3.head("nothing.whl") is None
    with pytest.raises(ObjectNotFound) as caught:
        await s3.open("nothing.whl")
    assert caught.value.code == "NoSuchKey"
    assert "nothing.whl" in str(caught.value)
    await s3.delete("nothing.whl")  # no error: S3 does not tell
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_ranges(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="ranges")
    payload = bytes(range(256)) * 40  # 10,240 bytes
    path = tmp_path / "r"
    path.write_bytes(payload)
    await s3.put_file("r.whl", str(path))
    data, body = await fetch(s3, "r.whl", (100, 199))
    assert data == payload[100:200]
    assert body.content_range == (100, 199, len(payload)) and body.info.size == len(payload)
    data, body = await fetch(s3, "r.whl", (10_000, None))
    assert data == payload[10_000:]
    data, body = await fetch(s3, "r.whl", (10_000, 99_999))  # clipped at the end, as HTTP says
    assert data == payload[10_000:] and body.content_range == (10_000, len(payload) - 1, len(payload))
    with pytest.raises(RangeNotSatisfiable) as caught:
        await s3.open("r.whl", (len(payload), None))
    assert caught.value.status == 416
    with pytest.raises(ValueError):
        await s3.open("r.whl", (5, 4))
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_list_pages_and_prefixes(seaweedfs, s3_env):
    s3 = await client(seaweedfs, prefix="listing")
    other = await client(seaweedfs, prefix="listing-other")
    for n in range(5):
        await s3.put_bytes(f"p/{n}.whl", b"x")
    await s3.put_bytes("q/0.whl", b"x")
    await other.put_bytes("p/9.whl", b"y")  # shares the text "listing" but not the prefix "listing/"
    first = await s3.list("p/", max_keys=2)
    assert [o.key for o in first.objects] == ["p/0.whl", "p/1.whl"] and first.next_token
    second = await s3.list("p/", first.next_token, max_keys=2)
    assert [o.key for o in second.objects] == ["p/2.whl", "p/3.whl"]
    assert sorted(o.key for o in await s3.list_all("p/")) == [f"p/{n}.whl" for n in range(5)]
    assert sorted(o.key for o in await s3.list_all()) == [f"p/{n}.whl" for n in range(5)] + ["q/0.whl"]
    assert [o.key for o in await other.list_all()] == ["p/9.whl"]
    await s3.close()
    await other.close()


# -- streaming ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_50_mib_object_streams_both_ways_at_steady_rss(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="big")
    path = tmp_path / "big.whl"
    size = 50 * MiB
    digest = await deferToThread(write_random, path, size)

    peak = RssPeak()
    await s3.put_file("big.whl", str(path), size=size, sha256=digest)
    put_growth = peak.stop()

    peak = RssPeak()
    body = await s3.open("big.whl")
    consumer = Consumer(pause_every=4 * MiB, delay=0.005)
    written = await body.deliver(consumer)
    get_growth = peak.stop()

    assert (written, consumer.size, consumer.digest.hexdigest()) == (size, size, digest)
    print(f"RSS growth: put {put_growth / MiB:.1f} MiB, get {get_growth / MiB:.1f} MiB")
    # Reading either way whole into memory would add 50 MiB or more.
    assert put_growth < 16 * MiB, put_growth
    assert get_growth < 16 * MiB, get_growth
    await s3.delete("big.whl")
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_a_paused_consumer_holds_back_the_download(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="flow")
    path = tmp_path / "flow.whl"
    size = 48 * MiB
    digest = await deferToThread(write_random, path, size)
    await s3.put_file("flow.whl", str(path), size=size, sha256=digest)
    body = await s3.open("flow.whl")
    consumer = Consumer(hold=True)
    done = body.deliver(consumer)
    await task.deferLater(reactor, 1.0, lambda: None)
    # Paused after the first write: what arrived since is what was already
    # in flight (socket buffers), not the object.
    assert consumer.paused
    held = consumer.size
    assert held < 8 * MiB, held
    await task.deferLater(reactor, 0.5, lambda: None)
    assert consumer.size == held
    consumer.resume()
    assert await done == size
    assert consumer.digest.hexdigest() == digest
    await s3.delete("flow.whl")
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_a_consumer_that_stops_ends_the_download(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="stop")
    path = tmp_path / "stop.whl"
    await deferToThread(write_random, path, 8 * MiB)
    await s3.put_file("stop.whl", str(path))
    body = await s3.open("stop.whl")
    consumer = Consumer(hold=True)
    done = body.deliver(consumer)
    await task.deferLater(reactor, 0.2, lambda: None)
    consumer.producer.stopProducing()  # the client went away
    with pytest.raises(TransferInterrupted):
        await done
    assert consumer.producer is None  # unregistered
    # The client goes on working on other connections.
    assert (await s3.head("stop.whl")).size == 8 * MiB
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_a_discarded_body_frees_its_connection(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="discard")
    await s3.put_bytes("d.whl", b"d" * 100_000)
    for _ in range(40):  # more than the pool keeps per host
        body = await s3.open("d.whl")
        body.discard()
    data, _ = await fetch(s3, "d.whl")
    assert data == b"d" * 100_000
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_bytes_that_differ_from_their_digests_are_refused_by_the_store(seaweedfs, s3_env, tmp_path):
    s3 = await client(seaweedfs, prefix="hash")
    path = tmp_path / "h.whl"
    path.write_bytes(b"the real bytes")
    other = b"other bytes of the same size"[:14]
    with pytest.raises(S3Error) as caught:
        await s3.put_file("h.whl", str(path), size=14, sha256=hashlib.sha256(other).hexdigest(),
                          md5=hashlib.md5(other).hexdigest())
    assert caught.value.code == "BadDigest" and caught.value.status == 400
    assert str(caught.value).startswith("object store error BadDigest (HTTP 400)")
    assert await s3.head("h.whl") is None
    await s3.close()


# -- presigned URLs -------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest_twisted.ensureDeferred
async def test_presigned_get_urls(seaweedfs, s3_env):
    s3 = await client(seaweedfs, prefix="presign")
    await s3.put_bytes("p q+r.whl", b"presigned bytes")
    url = s3.presign_get("p q+r.whl", expires=60)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    assert "pypid-test-admin-secret" not in url
    assert await deferToThread(_get, url) == (200, b"presigned bytes")
    tampered = url.replace("p%20q%2Br.whl", "other.whl")
    status, _ = await deferToThread(_get, tampered)
    assert status == 403
    short = s3.presign_get("p q+r.whl", expires=1)
    await task.deferLater(reactor, 2.2, lambda: None)
    status, _ = await deferToThread(_get, short)
    assert status == 403
    with pytest.raises(ValueError):
        s3.presign_get("p q+r.whl", expires=0)
    await s3.close()


# -- configuration errors: one clear line each ----------------------------


@pytest_twisted.ensureDeferred
async def test_check_passes_for_a_good_configuration(seaweedfs, s3_env):
    s3 = await client(seaweedfs)
    assert await s3.check() is None
    assert s3.credentials.method == "env"
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_check_names_a_missing_bucket(seaweedfs, s3_env):
    s3 = await client(seaweedfs, bucket="no-such-bucket")
    with pytest.raises(ObjectNotFound) as caught:
        await s3.check()
    assert str(caught.value) == f"bucket 'no-such-bucket' does not exist at {seaweedfs.endpoint}"
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_check_names_an_unknown_access_key_without_showing_it(seaweedfs, s3_env):
    s3_env.setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWNTOTHESTORE")
    s3 = await client(seaweedfs)
    with pytest.raises(S3Error) as caught:
        await s3.check()
    line = str(caught.value)
    assert caught.value.code == "InvalidAccessKeyId"
    assert line == f"{seaweedfs.endpoint} does not know the access key (credentials from env)"
    assert "AKIDUNKNOWN" not in line
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_check_names_a_wrong_secret_without_showing_it(seaweedfs, s3_env):
    s3_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    s3 = await client(seaweedfs)
    with pytest.raises(S3Error) as caught:
        await s3.check()
    assert caught.value.code == "SignatureDoesNotMatch"
    assert str(caught.value) == \
        f"the secret key does not match the access key at {seaweedfs.endpoint} (credentials from env)"
    assert "not-the-secret" not in str(caught.value)
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_credentials_from_a_shared_credentials_file(seaweedfs, s3_env, tmp_path):
    s3_env.delenv("AWS_ACCESS_KEY_ID")
    s3_env.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "no-aws-credentials"  # the path s3_env points botocore to
    credentials.write_text(
        f"[default]\naws_access_key_id = {seaweedfs.reader_key}\naws_secret_access_key = {seaweedfs.reader_secret}\n"
    )
    s3 = await client(seaweedfs, prefix="shared")
    assert s3.credentials.method == "shared-credentials-file"
    assert await s3.check() is None
    # The reader may list and read, not write.
    with pytest.raises(S3Error) as caught:
        await s3.put_bytes("x.whl", b"x")
    assert caught.value.code == "AccessDenied"
    assert str(caught.value) == (f"access denied to bucket 'pypid' at {seaweedfs.endpoint} "
                                 "(credentials from shared-credentials-file)")
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_no_credentials_at_all(seaweedfs, s3_env):
    s3_env.delenv("AWS_ACCESS_KEY_ID")
    s3_env.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(S3Error) as caught:
        await client(seaweedfs)
    assert caught.value.code == "NoCredentials"
    assert str(caught.value).startswith("no S3 credentials found: set AWS_ACCESS_KEY_ID")


@pytest_twisted.ensureDeferred
async def test_check_names_an_endpoint_where_nothing_listens(seaweedfs, s3_env):
    endpoint = f"http://127.0.0.1:{free_port()}"
    s3 = await client(seaweedfs, endpoint=endpoint)
    with pytest.raises(StoreUnreachable) as caught:
        await s3.check()
    assert str(caught.value) == f"cannot reach the object store at {endpoint}: connection refused"
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_check_names_an_unknown_host(seaweedfs, s3_env):
    endpoint = "http://pypid-no-such-host.invalid:9000"
    s3 = await client(seaweedfs, endpoint=endpoint)
    with pytest.raises(StoreUnreachable) as caught:
        await s3.check()
    assert str(caught.value) == \
        f"cannot reach the object store at {endpoint}: host name 'pypid-no-such-host.invalid' not found"
    await s3.close()


class _NotS3(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/html")
        return b"<html><body>Not Found</body></html>"


@pytest_twisted.ensureDeferred
async def test_check_names_an_endpoint_that_is_not_s3(seaweedfs, s3_env):
    port = reactor.listenTCP(0, Site(_NotS3()), interface="127.0.0.1")
    endpoint = f"http://127.0.0.1:{port.getHost().port}"
    try:
        s3 = await client(seaweedfs, endpoint=endpoint)
        with pytest.raises(S3Error) as caught:
            await s3.check()
        assert str(caught.value) == \
            f"{endpoint} answered HTTP 404 (text/html), not like an S3 store: check --s3-endpoint"
        await s3.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_answer_that_never_comes_times_out(seaweedfs, s3_env):
    class Silent(Resource):
        isLeaf = True

        def render_GET(self, request):
            from twisted.web.server import NOT_DONE_YET
            return NOT_DONE_YET

    port = reactor.listenTCP(0, Site(Silent()), interface="127.0.0.1")
    endpoint = f"http://127.0.0.1:{port.getHost().port}"
    try:
        s3 = await S3Client.connect(location(seaweedfs, endpoint=endpoint), reactor=reactor, timeout=0.5)
        with pytest.raises(StoreUnreachable) as caught:
            await s3.check()
        assert str(caught.value) == f"cannot reach the object store at {endpoint}: no answer within 0.5 s"
        await s3.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_store_going_away_and_coming_back(own_seaweedfs, s3_env, tmp_path):
    server = own_seaweedfs
    s3 = await client(server, prefix="fault")
    await s3.put_bytes("before.whl", b"before")
    await deferToThread(server.stop)
    with pytest.raises(StoreUnreachable) as caught:
        await s3.put_bytes("during.whl", b"during")
    assert "connection refused" in str(caught.value)
    with pytest.raises(StoreUnreachable):
        await s3.open("before.whl")
    await deferToThread(server.start)
    data, _ = await fetch(s3, "before.whl")
    assert data == b"before"
    await s3.put_bytes("after.whl", b"after")
    assert sorted(o.key for o in await s3.list_all()) == ["after.whl", "before.whl"]
    await s3.close()


@pytest_twisted.ensureDeferred
async def test_the_store_dying_mid_download(own_seaweedfs, s3_env, tmp_path):
    server = own_seaweedfs
    s3 = await client(server, prefix="dying")
    path = tmp_path / "dying.whl"
    await deferToThread(write_random, path, 32 * MiB)
    await s3.put_file("dying.whl", str(path))
    body = await s3.open("dying.whl")
    consumer = Consumer(hold=True)
    done = body.deliver(consumer)
    await task.deferLater(reactor, 0.2, lambda: None)
    await deferToThread(server.kill)
    consumer.resume()
    with pytest.raises(TransferInterrupted) as caught:
        await done
    assert f"of {32 * MiB} bytes" in str(caught.value)
    assert consumer.size < 32 * MiB
    await s3.close()
