"""The parser of fenced blocks and their markers (pure)."""

from __future__ import annotations

import pytest

from tests.docs.blocks import MarkerError, blocks, parse_marker

SAMPLE = """\
# A document

```sh
echo unmarked
```

<!-- run -->
```bash
echo plain run
```

```ini
[global]
index-url = x
```

<!-- run
before: mkdir -p packages
server: -P htpasswd packages
replace: /srv/ => {tmp}/srv/
stdin: pw
stdin: pw
previous-block: ~/.pypirc
-->
```sh
pypid passwd -c htpasswd alice
```

- in a list:

  <!-- tested-by: tests/test_x.py::test_y .ci/debian -->
  ```sh
  sudo systemctl restart pypid
  ```

<!-- file: examples/nginx-pypid.conf -->
````nginx
```not a fence end```
````

<!-- run
frobnicate: yes
-->
```sh
true
```
"""


def test_blocks_and_markers(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(SAMPLE)
    found = blocks(path)
    assert [(b.line, b.language) for b in found] == [
        (3, "sh"), (8, "bash"), (12, "ini"), (25, "sh"), (32, "sh"), (37, "nginx"), (44, "sh")]
    unmarked, plain, ini, full, listed, nginx, bad = found
    assert unmarked.marker is None and unmarked.is_shell
    assert plain.marker.kind == "run" and plain.marker.options == [] and plain.text == "echo plain run\n"
    assert ini.marker is None and not ini.is_shell
    assert full.marker.get("stdin") == ["pw", "pw"]
    assert full.marker.get("replace") == ["/srv/ => {tmp}/srv/"]
    assert full.marker.get("server") == ["-P htpasswd packages"]
    assert full.previous is ini
    assert listed.marker.kind == "tested-by"
    assert listed.marker.refs == ["tests/test_x.py::test_y", ".ci/debian"]
    assert listed.text == "sudo systemctl restart pypid\n"
    assert nginx.marker.refs == ["examples/nginx-pypid.conf"] and nginx.text == "```not a fence end```\n"
    assert bad.marker is None and "frobnicate" in bad.marker_error


@pytest.mark.parametrize("comment", [
    "tested-by:",
    "file: a b",
    "run\nserver: a\nserver: b",
    "run\nreplace: no arrow",
    "something else",
])
def test_bad_markers(comment):
    with pytest.raises(MarkerError):
        parse_marker(comment)
