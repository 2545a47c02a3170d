"""Figure 11: chat streaming latency. A fake OpenAI-compatible provider process (the one the
tests use) delays its first token by a known amount; a ``foreman serve`` process routes every
role to it through ``api_base``; the official ``openai`` SDK streams a chat completion. The
figure is how long after the provider sent the final answer's first token the first content
delta reached the client (same machine, same wall clock)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai

from evals.bench.server import Server
from evals.bench.stats import Row, Stat, within
from tests.fake_provider.config import write_config
from tests.fake_provider.process import fake_provider

GOAL_MS = 50.0
FIRST_TOKEN_DELAY_MS = 300.0
TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


async def _one(url: str) -> tuple[float | None, float]:
    """(wall time of the first content delta, wall time the stream ended)."""
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="local", max_retries=0,
                                timeout=300)
    first: float | None = None
    stream = await client.chat.completions.create(
        model="support", stream=True, messages=[{"role": "user", "content": TASK}])
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.time()
    await client.close()
    return first, time.time()


async def streaming_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """First content delta at the client minus the provider's first token, per run."""
    gaps: list[float] = []
    with fake_provider(FAKE_CHUNK_DELAY_MS="5") as fake:
        cfg = write_config(workdir / "streaming.yaml", fake.api_base)
        with Server(workdir / "streaming", {"FOREMAN_OFFLINE": "0"}, config=cfg) as server:
            await _one(server.url)  # warm-up: litellm's import, the first connection
            for _ in range(reps):
                fake.control(reset=True, first_token_delay_ms=FIRST_TOKEN_DELAY_MS)
                first, _end = await _one(server.url)
                provider = fake.first_token_at()
                if first is not None and provider:
                    gaps.append((first - provider[-1]) * 1000)
    if not gaps:
        return [Row("11 streaming", "first content delta after the provider's first token",
                    Stat.of([float("nan")]), "ms", goal=f"<= {GOAL_MS:.0f} ms", met=False,
                    detail={"error": "no content delta reached the client"})]
    stat = Stat.of(gaps)
    return [Row("11 streaming", "chat: first content delta at the client after the provider's "
                f"first token (provider delays it {FIRST_TOKEN_DELAY_MS:.0f} ms)", stat, "ms",
                goal=f"<= {GOAL_MS:.0f} ms", met=within(stat, GOAL_MS),
                detail={"samples_ms": [round(g, 2) for g in gaps]})]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in asyncio.run(streaming_figures(None, Path(tmp), 3)):
            print(row.figure, row.label, row.value.fmt(1), row.unit)
