"""``python -m evals.bench``: run the figures, print the table, write bench-results.json."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from evals.bench.report import show, write
from evals.bench.stats import Row

FIGURES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__)
    p.add_argument("--config", type=Path, default=None, help="foreman.yaml to start from")
    p.add_argument("--reps", type=int, default=5, help="repetitions per measurement")
    p.add_argument("--only", default=",".join(FIGURES), help="figures to run, e.g. 1,2,5")
    p.add_argument("--out", type=Path, default=Path("bench-results.json"))
    return p.parse_args()


async def _run(only: set[str], config: Path | None, workdir: Path, reps: int) -> list[Row]:
    rows: list[Row] = []
    if "0" in only:
        from evals.bench.magentic import magentic_figures

        rows += await magentic_figures(config, workdir, reps)
    if only & {"1", "2", "5"}:
        from evals.bench.loop import loop_figures

        rows += [r for r in await loop_figures(config, workdir, reps)
                 if r.figure.split()[0] in only]
    if "3" in only:
        from evals.bench.fanout import fanout_figures

        rows += await fanout_figures(config, workdir, max(3, reps // 2))
    if only & {"4", "6"}:
        from evals.bench.concurrency import http_figures

        rows += await http_figures(config, workdir, only, reps)
    if "7" in only:
        from evals.bench.coldstart import coldstart_figures

        rows += await coldstart_figures(config, workdir, reps)
    if only & {"8", "9"}:
        from evals.bench.mcp import mcp_figures

        rows += [r for r in await mcp_figures(workdir, reps) if r.figure.split()[0] in only]
    if "10" in only:
        from evals.bench.tracing import tracing_figures

        rows += await tracing_figures(config, workdir, reps)
    if "11" in only:
        from evals.bench.streaming import streaming_figures

        rows += await streaming_figures(config, workdir, reps)
    if "12" in only:
        from evals.bench.distributed import distributed_figures

        rows += await distributed_figures(config, workdir)
    if "13" in only:
        from evals.bench.storeloop import storeloop_figures

        rows += await storeloop_figures(config, workdir, reps)
    if "14" in only:
        from evals.bench.driver import driver_figures

        rows += await driver_figures(reps)
    return rows


def main() -> None:
    """Entry point of ``make bench``."""
    args = _args()
    # Offline and network-free whatever the environment holds.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.basicConfig(level=logging.WARNING)
    only = {f.strip() for f in args.only.split(",") if f.strip()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foreman-bench-") as tmp:
        rows = asyncio.run(_run(only, args.config, Path(tmp), args.reps))
    seconds = time.perf_counter() - started
    show(rows)
    write(rows, args.out, seconds, args.reps)
    met = sum(1 for r in rows if r.met is True)
    missed = sum(1 for r in rows if r.met is False)
    print(f"{met} goals met, {missed} missed · {seconds:.0f} s · results in {args.out}")


if __name__ == "__main__":
    main()
