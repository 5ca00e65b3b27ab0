"""Command line of the benchmarks: `python -m tools.bench locomo|load|mixed|ingest|zhen|updates ...`
(see "Benchmarks" in README.md)."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import BenchError, clean_nans, loadavg_1m, machine_info, write_json
from tools.bench.host import Api, ServiceHost
from tools.bench.load import FULL_DEFAULTS, QUICK_DEFAULTS, STORES, LoadConfig, run_load
from tools.bench.locomo import SEARCH_LIMIT, Conversation, HttpBackend, load_locomo, run_protocol
from tools.bench.report import load_tables, load_targets, locomo_comparison, locomo_tables
from tools.harness.models import DEFAULT_LOCOMO


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"sizes are integers separated by commas: {text!r}") from error
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    loc = sub.add_parser("locomo", help="retrieval recall on LoCoMo (our service, optionally beside plain mem0)")
    loc.add_argument("--data", type=Path, default=DEFAULT_LOCOMO, help=f"LoCoMo JSON file (default {DEFAULT_LOCOMO})")
    loc.add_argument("--url", help="a running service to test; default: start a dev host on a fresh data folder")
    loc.add_argument("--baseline", choices=["mem0"], help="also run the protocol on plain mem0, in this process")
    loc.add_argument("--out", type=Path, help="write the results as JSON here")
    loc.add_argument("--keep-data", action="store_true", help="keep the temporary data folders")

    load = sub.add_parser("load", help="latency, throughput, start time and memory under synthetic load")
    load.add_argument("--sizes", type=_sizes, help="memories of the measured user (default 1000,10000)")
    load.add_argument("--others", type=int, help="memories of other users added first (default 50000)")
    load.add_argument("--other-users", type=int, help="how many other users share them (default 50)")
    load.add_argument(
        "--store",
        choices=[*STORES, "both"],
        default="both",
        help="vector store (default both: embedded and chroma; qdrant loads the server at QDRANT_URL)",
    )
    load.add_argument(
        "--embeddings",
        choices=["local", "fake-openai"],
        default="local",
        help="local model (default), or 1,536-dim embeddings from the fake OpenAI server over HTTP (the cloud's shape)",
    )
    load.add_argument(
        "--embedding-latency-ms", type=float, default=30.0, help="the fake server's delay per answer (default 30)"
    )
    load.add_argument("--mixed-users", type=int, help="users of the mixed-load phase (default 100; 0 skips it)")
    load.add_argument("--mixed-per-user", type=int, help="memories per user of the mixed phase (default 200)")
    load.add_argument("--mixed-seconds", type=float, help="seconds per client count of the mixed phase (default 20)")
    load.add_argument("--queries", type=int, help="timed searches per size (default 200)")
    load.add_argument("--single-adds", type=int, help="single adds timed (default 1000)")
    load.add_argument("--batch-size", type=int, help="memories per batch-add call (default 100)")
    load.add_argument("--import-runs", type=int, help="fresh interpreters timing `import function_app` (default 5)")
    load.add_argument("--profile-queries", type=int, help="searches of the in-process profile; 0 skips it")
    load.add_argument(
        "--search-budget",
        type=float,
        dest="search_budget_s",
        help="seconds of timed searches per size before stopping early, at least 20 run (default 180)",
    )
    load.add_argument(
        "--cold-restarts",
        type=int,
        dest="cold_restarts",
        help="worker restarts per size timing a user's first search against warm ones (default 5)",
    )
    load.add_argument("--profile", action="store_true", help="also print cProfile's hottest functions")
    load.add_argument("--chroma-host", help="use this Chroma server instead of starting one")
    load.add_argument("--chroma-port", type=int, help="its port (default 8000)")
    load.add_argument("--seed", type=int, default=7, help="seed of the synthetic texts (default 7)")
    load.add_argument("--quick", action="store_true", help="a small smoke configuration (CI), not for timing")
    load.add_argument("--out", type=Path, help="write the results as JSON here")
    load.add_argument("--keep-data", action="store_true", help="keep the temporary data folders")

    mix = sub.add_parser("mixed", help="ops/s of one worker under 1, 8, 32 clients: 80 % search / 20 % add")
    mix.add_argument("--url", help="a running service to load (e.g. an older commit's); default: start a dev host")
    mix.add_argument("--users", type=int, default=100, help="users seeded (default 100)")
    mix.add_argument("--per-user", type=int, default=200, help="memories per user (default 200)")
    mix.add_argument("--clients", default="1,8,32", type=_sizes, help="client counts, one phase each (default 1,8,32)")
    mix.add_argument("--seconds", type=float, default=20.0, help="seconds per phase (default 20)")
    mix.add_argument("--seed", type=int, default=7, help="seed of the synthetic texts (default 7)")
    mix.add_argument("--pid", type=int, help="the pid of the worker at --url, for its CPU per operation")
    mix.add_argument("--out", type=Path, help="write the results as JSON here")

    zhen = sub.add_parser(
        "zhen", help="Chinese/English retrieval of each local embedding model (top-1, R@5; hybrid and dense)"
    )
    zhen.add_argument("--models", default="int8,fp32,multilingual", help="int8, fp32, multilingual (default all)")
    zhen.add_argument("--data", type=Path, help="the retrieval set (default tests/data/zh_en_retrieval.json)")
    zhen.add_argument("--out", type=Path, help="write the results as JSON here")

    rp = sub.add_parser(
        "requestpath", help="the request path on its own: the endpoint's work and the host's round trip"
    )
    rp.add_argument("--runs", type=int, default=2000, help="calls per measure (default 2000)")
    rp.add_argument("--url", help="a running host, for its round trip (GET /health)")
    rp.add_argument("--out", type=Path, help="write the results as JSON here")

    ing = sub.add_parser(
        "ingest", help="202 latency, queue drain rate (one and two hosts), chat turn latency inline and queued"
    )
    ing.add_argument("--accepts", type=int, default=200, help="timed 202 adds (default 200)")
    ing.add_argument("--events", type=int, default=60, help="events per drain run (default 60)")
    ing.add_argument("--per-event", type=int, default=10, help="memories per event (default 10)")
    ing.add_argument("--chat-turns", type=int, default=8, help="timed chat turns per mode (default 8)")
    ing.add_argument("--llm-delay", type=float, default=0.5, help="seconds the fake LLM takes per call (default 0.5)")
    ing.add_argument("--out", type=Path, help="write the results as JSON here")
    ing.add_argument("--keep-data", action="store_true", help="keep the temporary data folders")
    upd = sub.add_parser(
        "updates", help="learning that stays true: precision/recall of current facts per language, duplicate rate"
    )
    upd.add_argument("--base-url", help="an OpenAI-compatible endpoint (e.g. http://localhost:11434/v1)")
    upd.add_argument("--model", help="the model (deployment) name at --base-url")
    upd.add_argument("--api-key", help="its API key (default: none)")
    upd.add_argument("--scripted", action="store_true", help="use the scripted model (the fake, answering the labels)")
    upd.add_argument("--latency-ms", type=float, default=0.0, help="the scripted model's delay per call (default 0)")
    upd.add_argument("--data", type=Path, help="the scenarios (default tests/data/updates_scenarios.json)")
    upd.add_argument("--limit", type=int, help="run only the first N scenarios")
    upd.add_argument("--out", type=Path, help="write the results as JSON here")
    upd.add_argument("--keep-data", action="store_true", help="keep the temporary data folders")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "locomo":
            result = run_locomo(args)
        elif args.command == "ingest":
            result = run_ingest_command(args)
        elif args.command == "updates":
            from tools.bench.updates import run_updates

            with _workdir(args.keep_data) as root:
                result = run_updates(args, root)
        elif args.command == "zhen":
            from tools.bench.zhen import DEFAULT_DATA, main_models, run_zhen

            result = run_zhen(main_models(args.models), args.data or DEFAULT_DATA)
        elif args.command == "requestpath":
            from tools.bench.requestpath import run_requestpath

            result = run_requestpath(args.runs, args.url)
        elif args.command == "mixed":
            from tools.bench.mixed import MixedConfig, run_mixed

            result = run_mixed(
                MixedConfig(
                    args.users,
                    args.per_user,
                    tuple(args.clients),
                    args.seconds,
                    seed=args.seed,
                    url=args.url,
                    pid=args.pid,
                )
            )
        else:
            result = run_load(load_config(args))
            result["targets"] = load_targets(result)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    # The file first: a long run's figures must survive a problem in printing them.
    if args.out:
        write_json(args.out, clean_nans(result))
    if args.command == "locomo":
        print(locomo_tables(result))
    elif args.command == "ingest":
        from tools.bench.ingest import ingest_tables

        print(ingest_tables(result))
    elif args.command == "updates":
        from tools.bench.updates import updates_table

        print(updates_table(result))
    elif args.command == "zhen":
        from tools.bench.zhen import zhen_table

        print(zhen_table(result))
    elif args.command == "mixed":
        from tools.bench.mixed import mixed_table

        print(mixed_table(result))
    elif args.command == "requestpath":
        from tools.bench.requestpath import requestpath_table

        print(requestpath_table(result))
    else:
        print(load_tables(result, show_cprofile=args.profile))
    if args.out:
        print(f"\nresults written to {args.out}")
    return 0


def load_config(args: argparse.Namespace) -> LoadConfig:
    preset = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset[name] if value is None else value

    config = LoadConfig(
        sizes=pick("sizes"),
        others=pick("others"),
        other_users=pick("other_users"),
        stores=["embedded", "chroma"] if args.store == "both" else [args.store],
        queries=pick("queries"),
        warmup=preset["warmup"],
        single_adds=pick("single_adds"),
        batch_size=pick("batch_size"),
        import_runs=pick("import_runs"),
        profile_queries=pick("profile_queries"),
        search_budget_s=pick("search_budget_s"),
        cold_restarts=pick("cold_restarts"),
        seed=args.seed,
        chroma_host=args.chroma_host,
        chroma_port=args.chroma_port,
        keep_data=args.keep_data,
        quick=args.quick,
        mixed_users=pick("mixed_users"),
        mixed_per_user=pick("mixed_per_user"),
        mixed_seconds=pick("mixed_seconds"),
        embeddings=args.embeddings,
        embedding_latency_ms=args.embedding_latency_ms,
    )
    if config.queries < 1 or config.batch_size < 1 or config.import_runs < 1:
        raise BenchError("--queries, --batch-size and --import-runs must be at least 1")
    if min(config.others, config.single_adds, config.profile_queries) < 0:
        raise BenchError("--others, --single-adds and --profile-queries cannot be negative")
    return config


# --- locomo --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="bench-locomo-"))
    try:
        yield root
    finally:
        if keep:
            print(f"data kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_ingest_command(args: argparse.Namespace) -> dict[str, Any]:
    from tools.bench.ingest import IngestConfig, run_ingest

    config = IngestConfig(
        accepts=args.accepts,
        events=args.events,
        per_event=args.per_event,
        chat_turns=args.chat_turns,
        llm_delay=args.llm_delay,
    )
    with _workdir(args.keep_data) as root:
        return run_ingest(config, root)


def run_locomo(args: argparse.Namespace) -> dict[str, Any]:
    data_path = args.data.expanduser().resolve()
    conversations = load_locomo(data_path)
    run_tag = f"locomo-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    result: dict[str, Any] = {
        "benchmark": "locomo",
        "data": str(data_path),
        "run_id": run_tag,
        "conversations": len(conversations),
        "limit": SEARCH_LIMIT,
        "machine": machine_info(),
    }
    with _workdir(args.keep_data) as root:
        result.update(_run_ours(args.url, conversations, run_tag, root))
        if args.baseline == "mem0":
            print("running the same protocol on plain mem0 (in-process)", file=sys.stderr, flush=True)
            result["baseline"] = _run_mem0(conversations, run_tag, root)
            result["comparison"] = locomo_comparison(result, result["baseline"])
    result["machine"]["loadavg_1m_at_end"] = loadavg_1m()
    return result


def _run_ours(url: str | None, conversations: Sequence[Conversation], run_tag: str, root: Path) -> dict[str, Any]:
    host = None
    extra: dict[str, Any] = {"url": url}
    if url is None:
        host = ServiceHost(root / "service" / "data")
        print(f"starting the dev host (data in {host.data_dir})", file=sys.stderr, flush=True)
        startup = host.start()
        url = host.url
        extra.update(
            {"url": None, "first_search_s": startup.first_search_s, "rss_after_first_search_mb": host.memory_mb()}
        )
    api = Api(url)
    try:
        api.check_reachable()
        print(f"adding and searching through {url}", file=sys.stderr, flush=True)
        cpu = host.cpu_seconds if host is not None else None
        scores = run_protocol(HttpBackend(api, cpu=cpu), conversations, run_tag)
        if host is not None:
            extra["worker_peak_rss_mb"] = host.peak_rss_mb()
    finally:
        api.close()
        if host is not None:
            host.stop()
    return {**scores, **extra}


def _run_mem0(conversations: Sequence[Conversation], run_tag: str, root: Path) -> dict[str, Any]:
    from tools.bench.baseline import Mem0Backend

    backend = Mem0Backend(root / "mem0" / "data")
    try:
        return {"name": "mem0", **run_protocol(backend, conversations, run_tag)}
    finally:
        backend.close()
