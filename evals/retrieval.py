"""Retrieval quality of the bundled knowledge bases, for the eval report."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from app.config.settings import KnowledgeConfig
from app.knowledge.embed import make_embedder
from app.knowledge.evaluate import evaluate, load_labelled
from app.knowledge.ingest import ingest_bundled
from app.knowledge.store import KnowledgeStore, open_chroma


def retrieval_scores(config: KnowledgeConfig | None = None) -> dict[str, Any]:
    """Recall@1/@5, MRR and query latency on evals/knowledge.yaml, with the configured
    (default: bundled offline) embedder, on a throw-away Chroma store."""
    config = config or KnowledgeConfig()
    with tempfile.TemporaryDirectory(prefix="foreman-retrieval-") as tmp:
        store = KnowledgeStore(open_chroma(config, Path(tmp)), make_embedder(config))
        ingest_bundled(store, "default", config.chunk_chars, config.overlap_chars)
        scores = evaluate(store, load_labelled(), tenant="default")
        return {"embedder": store.embedder.name, "questions": scores.questions,
                "recall_at_1": round(scores.recall_at_1, 3),
                "recall_at_5": round(scores.recall_at_5, 3), "mrr": round(scores.mrr, 3),
                "mean_query_ms": round(scores.mean_latency_ms, 1),
                "p95_query_ms": round(scores.p95_latency_ms, 1)}
