"""C{python -m tests.docs.ready PORT SCHEME LOG}: wait until a pypid answers its health check."""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.request


def main(argv: list[str]) -> int:
    port, scheme, log = argv
    url = f"{scheme}://127.0.0.1:{port}/health"
    context = ssl._create_unverified_context() if scheme == "https" else None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                if json.load(response).get("status") == "ok":
                    return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    try:
        with open(log, errors="replace") as f:
            text = f.read()
    except OSError:
        text = "(no log)"
    print(f"no pypid ready at {url} after 30 s; its log:\n{text}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
