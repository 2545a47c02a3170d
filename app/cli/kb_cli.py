"""``foreman kb``: ingest documents, search them, and measure retrieval quality."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.knowledge.store import KnowledgeStore

kb_app = typer.Typer(help="The shared knowledge bases (documents in Chroma).",
                     no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (foreman.yaml).")]
TenantOpt = Annotated[str, typer.Option(help="Tenant whose knowledge to use.")]


def _store(settings: Settings) -> KnowledgeStore:
    from app.knowledge.embed import make_embedder
    from app.knowledge.store import KnowledgeStore, open_chroma

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return KnowledgeStore(open_chroma(settings.knowledge, settings.data_dir),
                          make_embedder(settings.knowledge))


def _load(config: Path | None) -> Settings:
    from app.cli.cli_common import load_cli_settings as _settings

    return _settings(config)


@kb_app.command("ingest")
def ingest(path: Annotated[Path, typer.Argument(help="A file or folder (md, txt, pdf).")],
           collection: Annotated[str, typer.Option(help="Knowledge base to ingest into.")]
           = "default",
           tenant: TenantOpt = "default", config: ConfigOpt = None) -> None:
    """Ingest documents: unchanged files are skipped, changed ones replaced, bad ones reported."""
    import logging

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from app.knowledge.ingest import discover, ingest_path

    settings = _load(config)
    # pypdf logs every repair it attempts; the report below already names each bad file.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    console = Console(highlight=False)
    try:
        files = discover(path)
    except FileNotFoundError as e:
        typer.echo(f"foreman kb ingest: {e}", err=True)
        raise typer.Exit(2) from e
    store = _store(settings)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[current]}"), console=console) as bar:
        task = bar.add_task("Ingesting", total=len(files), current="")

        def advance(file: Path, outcome: str) -> None:
            bar.update(task, advance=1, current=f"{file.name}: {outcome}")

        report = ingest_path(store, path, collection=collection, tenant=tenant,
                             chunk_chars=settings.knowledge.chunk_chars,
                             overlap_chars=settings.knowledge.overlap_chars, progress=advance)
    console.print(f"{len(report.added)} added, {len(report.replaced)} replaced, "
                  f"{len(report.unchanged)} unchanged, {len(report.failed)} failed; "
                  f"{report.chunks} chunks in {report.seconds:.2f}s "
                  f"({report.chunks_per_s:.1f} chunks/s) into {collection!r} for {tenant!r}")
    for source, reason in report.failed.items():
        console.print(f"[red]skipped {source}: {reason}[/red]", markup=True)
    raise typer.Exit(1 if report.failed else 0)


@kb_app.command("search")
def search(query: Annotated[str, typer.Argument(help="What to look up.")],
           collection: Annotated[str | None, typer.Option(help="Knowledge base.")] = None,
           k: Annotated[int, typer.Option("--k", "-k", help="Passages to show.")] = 5,
           tenant: TenantOpt = "default", config: ConfigOpt = None) -> None:
    """Show the passages search_knowledge would return, with citations and scores."""
    store = _store(_load(config))
    for p in store.search(query, tenant=tenant, collection=collection, k=k):
        typer.echo(f"{p.score:.3f}  {p.citation}  ({p.title})")
        typer.echo("    " + " ".join(p.text.split())[:200])


@kb_app.command("eval")
def evaluate(tenant: TenantOpt = "default", config: ConfigOpt = None) -> None:
    """Recall@1/@5 and MRR of the bundled knowledge bases on the labelled question set."""
    from app.knowledge.evaluate import evaluate as run_eval
    from app.knowledge.evaluate import load_labelled
    from app.knowledge.ingest import ingest_bundled

    settings = _load(config)
    store = _store(settings)
    report = ingest_bundled(store, tenant, settings.knowledge.chunk_chars,
                            settings.knowledge.overlap_chars)
    if report.chunks:
        typer.echo(f"ingested {report.chunks} chunks in {report.seconds:.2f}s "
                   f"({report.chunks_per_s:.1f} chunks/s)")
    scores = run_eval(store, load_labelled(), tenant=tenant)
    typer.echo(f"embedder     {store.embedder.name}")
    typer.echo(f"questions    {scores.questions}")
    typer.echo(f"recall@1     {scores.recall_at_1:.3f}")
    typer.echo(f"recall@5     {scores.recall_at_5:.3f}")
    typer.echo(f"MRR@10       {scores.mrr:.3f}")
    typer.echo(f"query ms     mean {scores.mean_latency_ms:.1f}, p95 {scores.p95_latency_ms:.1f}")
