"""The eval report's retrieval figures come from the real bundled embedder."""

from __future__ import annotations

from evals.report import markdown
from evals.retrieval import retrieval_scores


def test_retrieval_scores_reach_the_report() -> None:
    scores = retrieval_scores()
    assert scores["questions"] >= 30
    assert scores["recall_at_5"] >= 0.85
    text = markdown({}, None, [], {"scenarios": 0, "seeds": 1, "git_sha": "x" * 12,
                                    "created": "now", "retrieval": scores})
    assert f"recall@5 **{scores['recall_at_5']:.3f}**" in text
