"""Chroma, the knowledge store and run memory, opened off the start-up path.

Importing chromadb and ingesting the bundled documents on first start take seconds; a
server must answer /healthz long before that. ``KnowledgeRuntime`` does the work in a
background thread as soon as it is created; the first search or memory call waits for it
(off the event loop), every later one finds it ready.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from graphs.ports import Memory, MemoryNote
from tools.knowledge import KnowledgeSearch, Passage

if TYPE_CHECKING:
    from app.config.settings import KnowledgeConfig
    from app.knowledge.embed import Embedder
    from app.knowledge.memory import ChromaMemory, PendingNotes
    from app.knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)


class KnowledgeRuntime:
    """Opens Chroma (and ingests the bundled knowledge on first start) in the background."""

    def __init__(self, config: KnowledgeConfig, data_dir: Path, embedder: Embedder,
                 pending: PendingNotes) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="knowledge")
        self._opened: Future[tuple[KnowledgeStore, ChromaMemory]] = self._pool.submit(
            self._open, config, data_dir, embedder, pending)
        self._memories: dict[str, ChromaMemory] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _open(config: KnowledgeConfig, data_dir: Path, embedder: Embedder,
              pending: PendingNotes) -> tuple[KnowledgeStore, ChromaMemory]:
        from app.knowledge.ingest import ensure_bundled
        from app.knowledge.memory import ChromaMemory
        from app.knowledge.store import KnowledgeStore, open_chroma

        client = open_chroma(config, data_dir)
        store = KnowledgeStore(client, embedder)
        if config.ingest_bundled:
            ensure_bundled(store, chunk_chars=config.chunk_chars,
                           overlap_chars=config.overlap_chars)
        memory = ChromaMemory(client, embedder, pending, recall_k=config.memory_recall)
        if moved := memory.adopt_pending():
            log.info("memory notes moved to the app database", extra={"notes": moved})
        return store, memory

    @property
    def opened(self) -> bool:
        """Chroma is open (and the bundled knowledge ingested): nothing waits any more."""
        return self._opened.done() and self._opened.exception() is None

    @property
    def store(self) -> KnowledgeStore:
        """The knowledge store, waiting for it if it is still opening."""
        return self._opened.result()[0]

    @property
    def memory(self) -> ChromaMemory:
        """Run memory (default tenant), waiting for it if it is still opening."""
        return self.memory_for("default")

    def memory_for(self, tenant: str) -> ChromaMemory:
        """One tenant's run memory; one instance per tenant, so its write queue is shared."""
        with self._lock:
            if tenant not in self._memories:
                self._memories[tenant] = self._opened.result()[1].for_tenant(tenant)
            return self._memories[tenant]

    async def aclose(self) -> None:
        """Write what memory still has queued, then let the opening thread finish."""
        for memory in list(self._memories.values()):
            await memory.flush()
        self._pool.shutdown(wait=True)


class LazyKnowledge(KnowledgeSearch):
    """``KnowledgeSearch`` that waits for the runtime on first use (tools run in threads)."""

    def __init__(self, runtime: KnowledgeRuntime) -> None:
        self.runtime = runtime

    def search(self, query: str, *, tenant: str, collection: str | None = None,
               k: int = 5) -> list[Passage]:
        """Search the tenant's documents."""
        return self.runtime.store.search(query, tenant=tenant, collection=collection, k=k)


class TenantMemory(Memory):
    """One tenant's view of run memory; the first call waits for the runtime off the loop."""

    def __init__(self, runtime: KnowledgeRuntime, tenant: str) -> None:
        self.runtime = runtime
        self.tenant = tenant

    async def _memory(self) -> ChromaMemory:
        if self.runtime.opened:  # no wait, so no thread hop
            return self.runtime.memory_for(self.tenant)
        return await asyncio.to_thread(self.runtime.memory_for, self.tenant)

    async def recall(self, thread_id: str, query: str) -> list[MemoryNote]:
        """Notes of the thread most related to ``query``."""
        return await (await self._memory()).recall(thread_id, query)

    async def remember(self, thread_id: str, note: MemoryNote) -> None:
        """Queue a note of the thread for writing (idempotent by key)."""
        await (await self._memory()).remember(thread_id, note)

    async def flush(self, thread_id: str | None = None) -> None:
        """Wait until the tenant's queued notes (or those of ``thread_id``) are written."""
        await (await self._memory()).flush(thread_id)
