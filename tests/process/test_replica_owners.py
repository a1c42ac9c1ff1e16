"""
First uploaders (an ACL with C{unlisted-projects = first-uploader}) with
two replicas: recorded in the catalog, so that both give the same answer,
and when both take a new project's first upload at once, one user wins;
an owner the owners file names (deployed to every node) still wins.
"""

from __future__ import annotations

import threading

from pypid.testing import wheel_bytes
from tests.process.conftest import need_module
from tests.replicas import Replicas
from tests.uploadhelp import basic, htpasswd, upload

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")


def test_first_uploaders_are_shared(tmp_path, seaweedfs, postgres):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "a", "bob": "b"})
    (tmp_path / "owners").write_text("reserved = bob\n")
    acl = tmp_path / "acl"
    acl.write_text("unlisted-projects = first-uploader\nowners-file = owners\n")
    replicas = Replicas(tmp_path, seaweedfs, postgres)
    try:
        a, b = (replicas.start("-P", str(passwords), "--acl", str(acl), name=n) for n in "ab")
        alice, bob = basic("alice", "a"), basic("bob", "b")
        assert upload(a, *wheel_bytes("mine", "1.0"), headers=alice)[0] == 200
        status, _, text = upload(b, *wheel_bytes("mine", "2.0"), headers=bob)
        assert (status, text) == (403, "Forbidden: bob may not upload to mine (mine belongs to alice).\n")
        assert upload(b, *wheel_bytes("mine", "2.0"), headers=alice)[0] == 200
        status, _, text = upload(a, *wheel_bytes("reserved", "1.0"), headers=alice)
        assert (status, text) == (403, "Forbidden: alice may not upload to reserved (reserved belongs to bob).\n")

        for n in range(5):
            project = f"contested{n}"
            barrier = threading.Barrier(2)
            results = {}

            def send(server, user, headers):
                barrier.wait()
                results[user] = upload(server, *wheel_bytes(project, "1.0", summary=user), headers=headers)

            threads = [threading.Thread(target=send, args=(a, "alice", alice)),
                       threading.Thread(target=send, args=(b, "bob", bob))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            codes = sorted(r[0] for r in results.values())
            assert codes == [200, 403], results
            winner = "alice" if results["alice"][0] == 200 else "bob"
            loser = "bob" if winner == "alice" else "alice"
            assert results[loser][2] == f"Forbidden: {loser} may not upload to {project} ({project} belongs to {winner}).\n"
        rows = postgres.psql("SELECT count(*) FROM pypid_owners", replicas.catalog_url.rsplit("/", 1)[1])
        assert rows.strip() == "6"
    finally:
        replicas.stop()
