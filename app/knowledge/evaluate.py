"""Retrieval quality on a labelled question → passage set: recall@k and MRR."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, TypeAdapter

from tools.knowledge import KnowledgeSearch, Passage

LABELLED_SET = Path(__file__).resolve().parents[2] / "evals" / "knowledge.yaml"


class Labelled(BaseModel):
    """A question and the passage that answers it (a phrase of the right source's text)."""

    collection: str
    question: str
    source: str
    passage: str

    def relevant(self, p: Passage) -> bool:
        """Whether a retrieved passage is the labelled one."""
        return p.source == self.source and self.passage in p.text


@dataclass(frozen=True)
class RetrievalScores:
    """Aggregate scores; ``ranks`` holds the 1-based rank of the first hit (0 = missed)."""

    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    mean_latency_ms: float
    p95_latency_ms: float
    ranks: tuple[int, ...]


def load_labelled(path: Path = LABELLED_SET) -> list[Labelled]:
    """The labelled set from YAML."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return TypeAdapter(list[Labelled]).validate_python(data)


def evaluate(search: KnowledgeSearch, labelled: list[Labelled], *, tenant: str = "default",
             depth: int = 10) -> RetrievalScores:
    """Ask every question within its collection; MRR counts hits down to ``depth``."""
    ranks: list[int] = []
    latencies: list[float] = []
    for item in labelled:
        started = time.perf_counter()
        found = search.search(item.question, tenant=tenant, collection=item.collection,
                              k=depth)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(next((i + 1 for i, p in enumerate(found) if item.relevant(p)), 0))
    n = len(ranks) or 1
    ordered = sorted(latencies) or [0.0]
    return RetrievalScores(
        questions=len(ranks),
        recall_at_1=sum(1 for r in ranks if r == 1) / n,
        recall_at_5=sum(1 for r in ranks if 0 < r <= 5) / n,
        mrr=sum(1 / r for r in ranks if r) / n,
        mean_latency_ms=statistics.fmean(latencies) if latencies else 0.0,
        p95_latency_ms=ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        ranks=tuple(ranks),
    )
