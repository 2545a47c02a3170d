"""The knowledge layer through a real Chroma server (`chroma run`), as distributed mode uses
it with ``knowledge.chroma_url``: ingest and search, tenant isolation, and a second process
on the same server seeing the same documents."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config.settings import KnowledgeConfig
from app.knowledge.ingest import ingest_path
from app.knowledge.store import KnowledgeStore, open_chroma
from tests.fakes import HashingEmbedder

CHROMA = Path(sys.executable).with_name("chroma")

SECOND_PROCESS = """
import json, sys
from pathlib import Path
from app.knowledge.store import KnowledgeStore, open_chroma
from app.config.settings import KnowledgeConfig
from tests.fakes import HashingEmbedder
store = KnowledgeStore(open_chroma(KnowledgeConfig(chroma_url=sys.argv[1]), Path(sys.argv[2])),
                       HashingEmbedder())
print(json.dumps({t: [p.text for p in store.search("refund limit", tenant=t, k=10)]
                  for t in ("acme", "globex")}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    """A `chroma run` on a free loopback port and a temp path, stopped at the end."""
    binary = str(CHROMA) if CHROMA.exists() else shutil.which("chroma")
    if binary is None:
        pytest.skip("the chroma binary (chromadb's CLI) is not installed")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("wb")
    proc = subprocess.Popen([binary, "run", "--host", "127.0.0.1", "--port", str(port),
                             "--path", str(tmp_path / "chroma-server")],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chroma run did not start: "
                                   + (tmp_path / "chroma.log").read_text(errors="replace"))
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _write(root: Path, name: str, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
    return root


def test_chroma_server_ingest_search_tenants_and_a_second_process(
        chroma_url: str, tmp_path: Path) -> None:
    config = KnowledgeConfig(chroma_url=chroma_url)
    store = KnowledgeStore(open_chroma(config, tmp_path / "one"), HashingEmbedder())
    report_a = ingest_path(store, _write(tmp_path / "a", "policy.md",
                                         "# Policy\n\nAcme refund limit is 900 USD.\n"),
                           collection="support", tenant="acme")
    ingest_path(store, _write(tmp_path / "b", "policy.md", "Globex refund limit is 50 USD."),
                collection="support", tenant="globex")
    assert report_a.chunks >= 1

    [best, *_] = store.search("refund limit", tenant="acme")
    assert "900 USD" in best.text and best.source == "a/policy.md"
    for tenant, own in (("acme", "Acme"), ("globex", "Globex")):
        found = store.search("refund limit Acme Globex", tenant=tenant, k=10)
        assert found and all(own in p.text for p in found)
    assert store.search("refund limit", tenant="initech") == []
    # Nothing was written locally: the documents live on the server.
    assert not (tmp_path / "one" / "chroma").exists()

    other = subprocess.run([sys.executable, "-c", SECOND_PROCESS, chroma_url,
                            str(tmp_path / "two")], capture_output=True, text=True,
                           timeout=120, cwd=Path(__file__).parents[3], check=True)
    seen = json.loads(other.stdout.strip().splitlines()[-1])
    assert seen["acme"] and all("Acme refund limit is 900 USD" in t for t in seen["acme"])
    assert seen["globex"] and all("Globex refund limit is 50 USD" in t for t in seen["globex"])

    # Re-ingesting in this process replaces on the server what the other one reads.
    ingest_path(store, _write(tmp_path / "a", "policy.md", "Acme refund limit is 700 USD."),
                collection="support", tenant="acme")
    again = KnowledgeStore(open_chroma(config, tmp_path / "three"), HashingEmbedder())
    texts = [p.text for p in again.search("refund limit", tenant="acme", k=10)]
    assert texts and all("700 USD" in t for t in texts)
    assert again.count("acme") == again.count("globex") == 1
