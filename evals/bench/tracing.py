"""Figure 10: what tracing costs per manager round (OpenTelemetry on vs off).

The same 20-round offline run through ``Runner`` (SQLite, durable), alternately without
tracing and with every span built and handed to a batch processor, paired per repetition.
The exporter drops the batches: what is measured is the run's own cost, not a collector's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from app.llm.scripted import ScriptedProvider
from app.observability import telemetry
from app.services import open_services
from evals.bench.loop import Switch, _foreman
from evals.bench.scenario import TEAM, bench_settings, rounds_behaviour
from evals.bench.stats import Row, Stat, ratios, within

ROUNDS = 20


class Dropped(SpanExporter):
    """Counts the spans it is given and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def tracing_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Per-round milliseconds with tracing off and on, and their paired ratio."""
    settings = bench_settings(config, workdir / "tracing", max_rounds=ROUNDS + 5)
    agents = [a.name for a in settings.teams[TEAM].agents]
    switch = Switch()
    exporter = Dropped()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    off: list[float] = []
    on: list[float] = []
    cpu: dict[bool, list[float]] = {False: [], True: []}  # process CPU: robust to load
    async with open_services(settings, scripted=ScriptedProvider(switch)) as services:
        runner = services.runner
        switch.current = rounds_behaviour(3, agents)
        await _foreman(runner, 3)  # warm-up
        switch.current = rounds_behaviour(ROUNDS, agents)
        for i in range(reps):
            # Alternate which goes first, so drift in the machine's load cancels out.
            for traced in ((False, True) if i % 2 == 0 else (True, False)):
                if traced:
                    telemetry.install(provider)
                started = time.process_time()
                try:
                    ms = (await _foreman(runner, ROUNDS))[0] * 1000 / ROUNDS
                finally:
                    telemetry.uninstall()
                provider.force_flush()  # the batch thread's work is counted with its run
                cpu[traced].append((time.process_time() - started) * 1000 / ROUNDS)
                (on if traced else off).append(ms)
    provider.shutdown()
    ratio = ratios(on, off)
    cpu_ratio = ratios(cpu[True], cpu[False])
    return [Row("10 tracing/round", f"OpenTelemetry on, {ROUNDS} rounds, wall", Stat.of(on),
                "ms/round", Stat.of(off), "tracing off", ratio, "<= 1.10x",
                within(ratio, 1.10), {"spans_exported": exporter.spans}),
            Row("10 tracing/round", f"OpenTelemetry on, {ROUNDS} rounds, process CPU",
                Stat.of(cpu[True]), "ms/round", Stat.of(cpu[False]), "tracing off",
                cpu_ratio, "<= 1.10x", within(cpu_ratio, 1.10))]
