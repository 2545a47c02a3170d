"""The Chroma-backed knowledge store: one collection per knowledge base, tenant in metadata.

Vectors are computed by our own ``Embedder`` and passed in, so Chroma never loads its
default embedding function (which downloads a model at run time). Every read filters on
``tenant``; a chunk id includes the tenant, so two tenants' copies of a file never collide.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.errors import ForemanError
from tools.knowledge import KnowledgeSearch, Passage

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from app.config.settings import KnowledgeConfig
    from app.knowledge.documents import Chunk, Document
    from app.knowledge.embed import Embedder

KB_PREFIX = "kb-"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class KnowledgeError(ForemanError):
    """The knowledge store cannot do what was asked (bad name, mixed embedders)."""


def open_chroma(config: KnowledgeConfig, data_dir: Path) -> ClientAPI:
    """Embedded persistent client under ``data_dir/chroma``, or an HTTP client when
    ``chroma_url`` is set. Telemetry is off either way."""
    # Set before chromadb is imported: its telemetry client reads the environment.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if config.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(config.chroma_url)
        return chromadb.HttpClient(host=url.hostname or "localhost",
                                   port=url.port or (443 if url.scheme == "https" else 8000),
                                   ssl=url.scheme == "https", settings=chroma_settings)
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def chunk_id(tenant: str, collection: str, source: str, index: int) -> str:
    """Deterministic chunk id: re-ingesting the same file addresses the same rows."""
    digest = hashlib.sha256(f"{tenant}\x00{collection}\x00{source}".encode()).hexdigest()
    return f"{digest[:24]}-{index}"


class KnowledgeStore(KnowledgeSearch):
    """Ingest-side and search-side operations on the knowledge collections."""

    def __init__(self, client: ClientAPI, embedder: Embedder) -> None:
        self.client = client
        self.embedder = embedder

    def collection(self, name: str) -> Collection:
        """The collection of knowledge base ``name``, created on first use."""
        if not _NAME.match(name):
            raise KnowledgeError(f"bad collection name {name!r}: use lowercase letters, "
                                 "digits, '-' and '_'")
        col = self.client.get_or_create_collection(
            KB_PREFIX + name, embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedder": self.embedder.name})
        used = (col.metadata or {}).get("embedder")
        if used != self.embedder.name:
            raise KnowledgeError(f"collection {name!r} was embedded with {used}, not "
                                 f"{self.embedder.name}; re-create it to switch embedders")
        return col

    def collections(self) -> list[str]:
        """Names of the knowledge bases in the store."""
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        return sorted(n[len(KB_PREFIX):] for n in names if n.startswith(KB_PREFIX))

    def count(self, tenant: str) -> int:
        """Chunks visible to ``tenant`` across every knowledge base."""
        return sum(len(self.collection(c).get(where={"tenant": tenant}, include=[])["ids"])
                   for c in self.collections())

    def stored_checksum(self, collection: str, tenant: str, source: str) -> str | None:
        """Checksum of the file version stored for ``source``, if any."""
        got = self.collection(collection).get(
            where={"$and": [{"tenant": tenant}, {"source": source}]}, limit=1,
            include=["metadatas"])
        metas = got["metadatas"] or []
        return str(metas[0]["checksum"]) if metas else None

    def replace(self, collection: str, tenant: str, source: str, doc: Document,
                chunks: Sequence[Chunk], ingested_at: str) -> None:
        """Store ``doc``'s chunks for ``source``, dropping whatever was stored for it before."""
        col = self.collection(collection)
        vectors = self.embedder.embed_documents([c.text for c in chunks])
        col.delete(where={"$and": [{"tenant": tenant}, {"source": source}]})
        metas: list[Any] = [{
            "tenant": tenant, "collection": collection, "source": source, "title": doc.title,
            "checksum": doc.checksum, "ingested_at": ingested_at, "chunk": i,
            "char_start": c.start, "char_end": c.end,
            "line_start": c.line_start, "line_end": c.line_end,
        } for i, c in enumerate(chunks)]
        col.add(ids=[chunk_id(tenant, collection, source, i) for i in range(len(chunks))],
                documents=[c.text for c in chunks], embeddings=np.asarray(vectors, np.float32),
                metadatas=metas)

    def search(self, query: str, *, tenant: str, collection: str | None = None,
               k: int = 5) -> list[Passage]:
        """Top ``k`` passages for ``query`` among ``tenant``'s chunks, best first."""
        names = [collection] if collection else self.collections()
        known = set(self.collections())
        vector = np.asarray([self.embedder.embed_query(query)], np.float32)
        found: list[Passage] = []
        for name in names:
            if name not in known:
                continue  # searching a knowledge base that does not exist finds nothing
            res = self.collection(name).query(
                query_embeddings=vector, n_results=k, where={"tenant": tenant},
                include=["documents", "metadatas", "distances"])
            docs = (res["documents"] or [[]])[0]
            metas = (res["metadatas"] or [[]])[0]
            dists = (res["distances"] or [[]])[0]
            for text, meta, dist in zip(docs, metas, dists, strict=True):
                if meta.get("tenant") != tenant:  # belt and braces over the where clause
                    continue
                found.append(Passage(
                    text=text, source=str(meta["source"]), title=str(meta["title"]),
                    collection=name, line_start=int(str(meta["line_start"])),
                    line_end=int(str(meta["line_end"])), score=1.0 - float(dist)))
        found.sort(key=lambda p: p.score, reverse=True)
        return found[:k]
