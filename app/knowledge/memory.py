"""Long-term run memory in Chroma: facts a thread established, with provenance and trust.

Every note carries where it came from (``source``, ``agent``, the tool results it rests on)
and a trust level; recall is filtered by tenant and thread, and the graph shows what it
returns to models inside a data block, never as instructions. A note whose source is not
an agent (a document, a tool's raw text) can only be stored as untrusted.

A note is stored as text first, in the app database (``PendingNotes``: the store's
``memory_pending`` table, ``app.storage.memory_rows``), and embedded when its thread is
first recalled: with the bundled model a note's vector costs ~50 ms of CPU, more than the
rest of the round that made it, and a thread that never runs again never needs it. The
recall that finds pending notes embeds them in one batch, moves them into ``run-memory``
and then searches. (Notes used to wait in a Chroma collection, whose upsert costs 5-15 ms
of CPU however few notes it carries; ``adopt_pending`` moves any left there.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import numpy as np

from graphs.ports import Memory, MemoryNote, Trust

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from app.knowledge.embed import Embedder

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTION = "run-memory"
LEGACY_PENDING = "run-memory-pending"  # where notes waited for their vectors before the table
# Under load the runs come first: the writer thread runs at this nice value.
WRITER_NICE = 10
# The writer gathers notes this long before it writes (unless a flush is waiting): one
# transaction per batch rather than one per note.
GATHER_S = 0.25
_TRUSTED_SOURCES = ("agent:", "system:")


def _lower_priority() -> None:
    """Make the calling thread the first to yield the CPU (Linux threads have their own
    nice value; elsewhere this is a no-op)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)


_writer_pool: ThreadPoolExecutor | None = None
_writer_pool_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """The one low-priority thread that embeds and stores notes for every memory."""
    global _writer_pool
    with _writer_pool_lock:
        if _writer_pool is None:
            _writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory",
                                              initializer=_lower_priority)
        return _writer_pool


def _id(tenant: str, thread_id: str, key: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{thread_id}\x00{key}".encode()).hexdigest()[:32]


class PendingNotes(Protocol):
    """Where notes wait for their vectors (the store: ``app.storage.memory_rows``). A row:
    ``id``, ``tenant``, ``thread_id``, ``write_id`` (the version), ``text``, ``meta``."""

    def put_pending(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def pending_of(self, tenant: str, thread_id: str) -> list[dict[str, Any]]: ...

    def drop_pending(self, moved: Sequence[tuple[str, str]]) -> None: ...


class ChromaMemory(Memory):
    """``Memory`` for one tenant, stored in the ``run-memory`` collection."""

    def __init__(self, client: ClientAPI, embedder: Embedder, pending: PendingNotes,
                 tenant: str = "default", recall_k: int = 5,
                 handles: dict[str, Collection] | None = None) -> None:
        self.client = client
        self.embedder = embedder
        self.pending = pending
        self.tenant = tenant
        self.recall_k = recall_k
        # Collection handles by name, shared by every tenant's view: opening one is a
        # round of catalogue queries (about 1 ms), paid once per process, not per call.
        self._handles: dict[str, Collection] = {} if handles is None else handles
        self._queued: list[tuple[str, MemoryNote]] = []
        self._unwritten: Counter[str] = Counter()  # thread id: notes queued or being written
        self._writer: asyncio.Task[None] | None = None
        self._batch_done = asyncio.Event()  # pulsed after every batch the writer stores
        self._hurry = asyncio.Event()  # a flush waits: write what is queued now

    def _handle(self, name: str, metadata: dict[str, Any] | None = None) -> Collection:
        col = self._handles.get(name)
        if col is None:
            col = self._handles[name] = self.client.get_or_create_collection(
                name, embedding_function=None, metadata=metadata)
        return col

    def _collection(self) -> Collection:
        return self._handle(COLLECTION, {"hnsw:space": "cosine",
                                         "embedder": self.embedder.name})

    def _reopening(self, work: Callable[[], T]) -> T:
        """``work``, once more with fresh handles if a collection was dropped under them
        (by an operator, or on a shared Chroma server by another process)."""
        from chromadb.errors import NotFoundError  # chromadb loads behind the bind

        try:
            return work()
        except NotFoundError:
            self._handles.clear()
            return work()

    def for_tenant(self, tenant: str) -> ChromaMemory:
        """The same store, seen as another tenant."""
        return ChromaMemory(self.client, self.embedder, self.pending, tenant, self.recall_k,
                            self._handles)

    def store(self, thread_id: str, note: MemoryNote) -> MemoryNote:
        """Write ``note`` (idempotent by key); returns it as stored, with its final label."""
        return self.store_many([(thread_id, note)])[0]

    def store_many(self, items: list[tuple[str, MemoryNote]]) -> list[MemoryNote]:
        """Write notes in one transaction, unembedded (module doc); a later note of the
        same key wins."""
        stored = [(thread_id, self._labelled(note)) for thread_id, note in items]
        latest = {_id(self.tenant, t, n.key): (t, n) for t, n in stored}
        if not latest:
            return []
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self.pending.put_pending([{
            "id": note_id, "tenant": self.tenant, "thread_id": t, "write_id": uuid.uuid4().hex,
            "text": n.text, "meta": {
                "tenant": self.tenant, "thread_id": t, "key": n.key, "source": n.source,
                "trust": n.trust.value, "agent": n.agent, "tools": ",".join(n.tools),
                "created_at": created}} for note_id, (t, n) in latest.items()])
        return [n for _, n in stored]

    def _embed_pending(self, thread_id: str) -> None:
        """Embed the thread's pending notes, move them into the searched collection, and
        drop the versions moved (a newer write of the same key, landed meanwhile, stays
        pending)."""
        rows = self.pending.pending_of(self.tenant, thread_id)
        if not rows:
            return
        texts = [str(r["text"]) for r in rows]
        self._collection().upsert(
            ids=[r["id"] for r in rows], documents=texts,
            metadatas=cast(Any, [r["meta"] for r in rows]),
            embeddings=np.asarray(self.embedder.embed_documents(texts), np.float32))
        self.pending.drop_pending([(r["id"], r["write_id"]) for r in rows])

    def adopt_pending(self) -> int:
        """Move the notes an older version left pending in Chroma into the table, then drop
        that collection; how many were moved."""
        from chromadb.errors import NotFoundError

        try:
            got = self.client.get_collection(LEGACY_PENDING).get(
                include=["documents", "metadatas"])
        except NotFoundError:
            return 0
        rows = []
        for note_id, text, meta in zip(got["ids"], got["documents"] or [],
                                       got["metadatas"] or [], strict=True):
            kept = {k: v for k, v in meta.items() if k != "write"}
            rows.append({"id": note_id, "tenant": str(kept["tenant"]),
                         "thread_id": str(kept["thread_id"]),
                         "write_id": str(meta.get("write") or uuid.uuid4().hex),
                         "text": str(text), "meta": kept})
        if rows:
            self.pending.put_pending(rows)
        with contextlib.suppress(NotFoundError):  # another process moved them first
            self.client.delete_collection(LEGACY_PENDING)
        return len(rows)

    @staticmethod
    def _labelled(note: MemoryNote) -> MemoryNote:
        if note.source.startswith(_TRUSTED_SOURCES):
            return note
        # Document or tool text is never promoted.
        return MemoryNote(key=note.key, text=note.text, source=note.source,
                          trust=Trust.UNTRUSTED, agent=note.agent, tools=note.tools)

    def lookup(self, thread_id: str, query: str, k: int | None = None) -> list[MemoryNote]:
        """The ``k`` notes of this tenant's thread closest to ``query``."""
        k = self.recall_k if k is None else k
        if k <= 0:
            return []
        return self._reopening(lambda: self._lookup(thread_id, query, k))

    def _lookup(self, thread_id: str, query: str, k: int) -> list[MemoryNote]:
        where: Any = {"$and": [{"tenant": self.tenant}, {"thread_id": thread_id}]}
        self._embed_pending(thread_id)
        col = self._collection()
        if not col.get(where=where, limit=1, include=[])["ids"]:
            return []  # a thread with nothing stored yet: no query to embed
        vector = np.asarray([self.embedder.embed_query(query)], np.float32)
        res = col.query(query_embeddings=vector, n_results=k, where=where,
                        include=["documents", "metadatas"])
        notes = []
        for text, meta in zip((res["documents"] or [[]])[0], (res["metadatas"] or [[]])[0],
                              strict=True):
            if meta.get("tenant") != self.tenant or meta.get("thread_id") != thread_id:
                continue
            tools = str(meta.get("tools") or "")
            notes.append(MemoryNote(
                key=str(meta["key"]), text=text, source=str(meta["source"]),
                trust=Trust(str(meta["trust"])), agent=str(meta.get("agent") or ""),
                tools=tuple(t for t in tools.split(",") if t)))
        return notes

    async def recall(self, thread_id: str, query: str) -> list[MemoryNote]:
        """``lookup`` off the event loop, after the thread's queued notes are written."""
        await self.flush(thread_id)
        return await asyncio.to_thread(self.lookup, thread_id, query)

    async def remember(self, thread_id: str, note: MemoryNote) -> None:
        """Queue ``note`` for the background writer and return at once.

        A round does not wait for Chroma: the writer stores queued notes in batches (their
        vectors are made later, module doc); a recall waits for its thread's notes, and
        shutdown (``flush``) for all of them. A note lost to a crash is still in the run's
        checkpointed state (``established``).
        """
        self._queued.append((thread_id, note))
        self._unwritten[thread_id] += 1
        if self._writer is None or self._writer.done():
            self._hurry.clear()  # a flush that found nothing to wait for asks nothing of it
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self, thread_id: str | None = None) -> None:
        """Wait until every queued note (or every note of ``thread_id``) is stored.

        Other threads' notes keep arriving on a busy server; a recall waits only for its own.
        """
        self._hurry.set()
        while self._writer is not None and not self._writer.done():
            if thread_id is None:
                await asyncio.shield(self._writer)
            elif not self._unwritten[thread_id]:
                return
            else:
                await self._batch_done.wait()

    async def _drain(self) -> None:
        while self._queued:
            if not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), GATHER_S)
            batch, self._queued = self._queued, []
            try:
                await asyncio.get_running_loop().run_in_executor(
                    _background(), self.store_many, batch)
            except Exception:  # memory is an aid: a failed write must not fail the run
                log.exception("memory write failed", extra={"notes": len(batch)})
            finally:
                for thread_id, _ in batch:
                    self._unwritten[thread_id] -= 1
                    if self._unwritten[thread_id] <= 0:
                        del self._unwritten[thread_id]
                self._batch_done.set()
                self._batch_done.clear()
