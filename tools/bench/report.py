"""Tables for stdout, and the speed targets checked against what was measured."""

from __future__ import annotations

from typing import Any

from tools.bench.common import fmt_ms, fmt_num, format_table

# The speed targets. Each is checked where the run measured it and reported either way.
# Issue 10's targets: search p95 per store, batch-add and RSS on the default store, cold/warm ratio.
SEARCH_P95_MS = {"embedded": 10.0, "chroma": 40.0}
SEARCH_TARGET_USER = 10_000
SEARCH_TARGET_TOTAL = 60_000
OVERHEAD_MAX = 0.15
BATCH_ADD_PER_S = 700.0
IMPORT_S = 0.3
FIRST_SEARCH_S = 2.0
PEAK_RSS_MB = 350.0
COLD_OVER_WARM_MAX = 1.5
COLD_SIZES = (300, 10_000)
# Issue 20: the request path (HTTP, routing, validation, JSON, the host) at most this share of a search.
HTTP_PART_MAX = 0.10


def _r(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f}%"


def overhead(ours: float | None, base: float | None) -> float | None:
    if ours is None or base is None or base <= 0:
        return None
    return round(ours / base - 1, 3)


# --- LoCoMo --------------------------------------------------------------------------------------
def locomo_tables(result: dict[str, Any]) -> str:
    systems = [("ours (HTTP)", result)]
    baseline = result.get("baseline")
    if baseline:
        systems.append((f"{baseline['name']} (in-process)", baseline))
    head = (
        f"LoCoMo retrieval: {result['conversations']} conversations, {result['memories']} memories, "
        f"{result['questions']} questions (categories 1-4, {result['skipped_questions']} without known evidence "
        f"skipped), limit {result['limit']}"
    )
    rows = [
        [
            name,
            r["questions"],
            _r(r["turn_recall@5"]),
            _r(r["turn_recall@10"]),
            _r(r["session_recall@10"]),
            fmt_ms(r["search_ms_p50"]),
            fmt_ms(r["search_ms_p95"]),
            fmt_ms(r.get("cpu_ms_per_search")),
            fmt_num(r["add_per_s"]),
            fmt_ms(r.get("cpu_ms_per_memory_added")),
        ]
        for name, r in systems
    ]
    out = [
        format_table(
            [
                "system",
                "questions",
                "turn R@5",
                "turn R@10",
                "session R@10",
                "search p50 ms",
                "p95 ms",
                "cpu ms/search",
                "adds/s",
                "cpu ms/add",
            ],
            rows,
            head,
        )
    ]
    headers = ["category", "questions"]
    for name, _ in systems:
        short = name.split()[0]
        headers += [f"{short} R@5", f"{short} R@10", f"{short} sR@10"]
    cat_rows = []
    for key, cat in result["per_category"].items():
        row: list[Any] = [f"{key} {cat['name']}", cat["questions"]]
        for _, r in systems:
            c = r["per_category"].get(key, {})
            row += [_r(c.get("turn_recall@5")), _r(c.get("turn_recall@10")), _r(c.get("session_recall@10"))]
        cat_rows.append(row)
    out.append(format_table(headers, cat_rows, "Per category"))
    if baseline:
        cmp = result["comparison"]
        out.append(
            f"vs {baseline['name']}: turn R@10 {cmp['turn_recall@10_gain']:+.3f}, session R@10 "
            f"{cmp['session_recall@10_gain']:+.3f}; search p50 overhead {_pct(cmp['search_p50_overhead'])}, "
            f"p95 {_pct(cmp['search_p95_overhead'])}, CPU per search {_pct(cmp['search_cpu_overhead'])} "
            f"(target <= {OVERHEAD_MAX:.0%}; ours includes HTTP)"
        )
    if result.get("worker_peak_rss_mb") is not None:
        out.append(
            f"dev host worker RSS: {fmt_num(result.get('rss_after_first_search_mb'))} MB after the first search, "
            f"peak {result['worker_peak_rss_mb']:.1f} MB"
        )
    return "\n\n".join(out)


def locomo_comparison(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    def gain(key: str) -> float | None:
        if ours.get(key) is None or base.get(key) is None:
            return None
        return round(float(ours[key]) - float(base[key]), 4)

    return {
        "turn_recall@5_gain": gain("turn_recall@5"),
        "turn_recall@10_gain": gain("turn_recall@10"),
        "session_recall@10_gain": gain("session_recall@10"),
        "search_p50_overhead": overhead(ours["search_ms_p50"], base["search_ms_p50"]),
        "search_p95_overhead": overhead(ours["search_ms_p95"], base["search_ms_p95"]),
        "search_cpu_overhead": overhead(ours.get("cpu_ms_per_search"), base.get("cpu_ms_per_search")),
    }


# --- load ----------------------------------------------------------------------------------------
def load_tables(result: dict[str, Any], show_cprofile: bool = False) -> str:
    stores: dict[str, Any] = result.get("stores", {})
    imp = result["import_function_app"]
    by_package = ", ".join(f"{p['package']} {p['self_ms']:.0f}" for p in imp["import_time_by_package"][:10])
    out = [
        f"import function_app: median {imp['median_s']:.3f} s over {len(imp['runs_s'])} fresh interpreters "
        f"(runs: {', '.join(f'{s:.3f}' for s in imp['runs_s'])})\n"
        f"  where it goes (-X importtime, self ms per package): {by_package}",
        _start_table(result),
        _cold_start_table(stores),
        _search_table(stores),
        _profile_table(stores),
    ]
    if show_cprofile:
        for name, s in stores.items():
            if "profile" in s:
                top = "\n".join(s["profile"]["cprofile_top"])
                out.append(f"cProfile of the service search path ({name}), by own time:\n{top}")
    out.append(_phase_table(stores))
    for name, s in stores.items():
        if "mixed" in s:
            from tools.bench.mixed import mixed_table

            out.append(f"({name}) " + mixed_table(s["mixed"]))
    out.append(_add_profile_table(stores))
    probe = _chroma_probe_table(stores)
    if probe:
        out.append(probe)
    out.append(targets_table(result["targets"]))
    return "\n\n".join(out)


def _start_table(result: dict[str, Any]) -> str:
    rows = []
    for name, s in result.get("stores", {}).items():
        single, batch = s["single_add"], s["batch_add"]
        rows.append(
            [
                name,
                f"{s['startup']['listening_s']:.2f}",
                f"{s['startup']['first_search_s']:.2f}",
                fmt_ms(single["ms_p50"]),
                fmt_ms(single["ms_p95"]),
                fmt_num(single["per_s"]),
                fmt_ms(single["worker_cpu_ms"]),
                fmt_num(batch["memories"]),
                fmt_num(batch["per_s"]),
                fmt_ms(batch["worker_cpu_ms_per_memory"]),
                fmt_num(s["startup"].get("rss_after_first_search_mb")),
                fmt_num(s["worker_peak_rss_mb"]),
                fmt_num(s.get("worker_rss_anon_mb_at_end")),
                fmt_num(s.get("worker_rss_file_mb_at_end")),
                fmt_num(s.get("worker_pss_mb_at_end")),
            ]
        )
    config = result["config"]
    return format_table(
        [
            "store",
            "port open s",
            "1st search s",
            "add p50 ms",
            "add p95 ms",
            "single adds/s",
            "add cpu ms",
            "batch-added",
            "batch adds/s",
            "cpu ms/memory",
            "RSS at start MB",
            "peak RSS MB",
            "RSS anon MB (end)",
            "RSS file MB (end)",
            "PSS MB (end)",
        ],
        rows,
        f"Start, writes and memory (times from Popen; {config['single_adds']} single adds; batches of "
        f"{config['batch_size']}; cpu = the worker's own CPU time per operation; RSS file = mapped files, "
        "the embedded engine's shard among them, which the kernel can reclaim; PSS = each page once, where RSS "
        "counts a page once per mapping)",
    )


def _cold_start_table(stores: dict[str, Any]) -> str:
    steps: list[str] = []
    for s in stores.values():
        steps += [k for k in s.get("cold_start_steps_s", {}) if k not in steps]
    rows = [[step] + [fmt_num(s.get("cold_start_steps_s", {}).get(step), 3) for s in stores.values()] for step in steps]
    return format_table(
        ["cold start step (s, fresh interpreter, empty store)", *stores], rows, "Where the first search's time goes"
    )


def _search_table(stores: dict[str, Any]) -> str:
    rows = [
        [
            name,
            fmt_num(r["user_memories"]),
            fmt_num(r["total_memories"]),
            r["count"],
            fmt_ms(r["ms_p50"]),
            fmt_ms(r["ms_p95"]),
            fmt_ms(r["ms_mean"]),
            fmt_ms(r["worker_cpu_ms"]),
            fmt_ms((r.get("cold_user") or {}).get("first_ms_p50")),
            fmt_ms((r.get("cold_user") or {}).get("warm_ms_p50")),
            _r((r.get("cold_user") or {}).get("first_over_warm")),
        ]
        for name, s in stores.items()
        for r in s["search"]
    ]
    headers = ["store", "user memories", "all memories", "queries", "p50 ms", "p95 ms", "mean ms", "cpu ms"]
    headers += ["user's 1st search, fresh worker ms", "warm ms", "1st/warm"]
    return format_table(
        headers,
        rows,
        "Search through HTTP (limit 10, one client, sequential; cpu = the worker's CPU time per search; the last"
        " three: p50 of a user's first search after a worker restart vs that worker's next searches, same run)",
    )


def _profile_table(stores: dict[str, Any]) -> str:
    stage_names: list[str] = []
    for s in stores.values():
        for stage in s.get("profile", {}).get("stages_ms_mean", {}):
            if stage not in stage_names:
                stage_names.append(stage)
    rows = []
    for name, s in stores.items():
        p = s.get("profile")
        if not p:
            continue
        http_part = None if p["http_ms_p50"] is None else p["http_ms_p50"] - p["service_ms_p50"]
        restarted = p.get("http_restarted_worker_ms_p50")
        restarted_part = None if restarted is None else restarted - p["service_ms_p50"]
        rows.append(
            [
                name,
                fmt_num(p["user_memories"]),
                fmt_ms(p["http_ms_p50"]),
                fmt_ms(p["service_ms_p50"]),
                fmt_ms(p["mem0_same_store_ms_p50"]),
                fmt_ms(p.get("plain_mem0_ms_p50")),
                fmt_ms(http_part),
                fmt_ms(restarted),
                fmt_ms(restarted_part),
            ]
            + [fmt_ms(p["stages_ms_mean"].get(stage)) for stage in stage_names]
        )
    headers = [
        "store",
        "user mems",
        "HTTP p50",
        "service p50",
        "mem0 same store",
        "plain mem0 p50",
        "HTTP part",
        "HTTP p50, restarted worker",
        "HTTP part, restarted",
        *stage_names,
    ]
    return format_table(
        headers,
        rows,
        "Where a search's time goes, ms: in-process on the same data and queries after the host stopped. "
        "service = MemoryService.search_memories; mem0 same store = Memory.search on the service's objects; "
        "plain mem0 = mem0 built without the service's parts; HTTP part = HTTP p50 - service p50; "
        "restarted = the warm searches of a restarted worker, whose shard is freshly loaded as in-process "
        "(the worker that wrote the data searches slower: the engine's structures grown by inserts); "
        "stage columns are means inside the service call",
    )


def _phase_table(stores: dict[str, Any]) -> str:
    rows = [
        [name, p["phase"], fmt_num(p["memories"]), f"{p['s']:.1f}", fmt_num(p["per_s"])]
        for name, s in stores.items()
        for p in s["batch_add"]["phases"]
    ]
    return format_table(["store", "phase", "memories", "s", "memories/s"], rows, "Batch-add throughput by phase")


def _add_profile_table(stores: dict[str, Any]) -> str:
    profiles = {name: s["profile"]["batch_add"] for name, s in stores.items() if "batch_add" in s.get("profile", {})}
    stage_names: list[str] = []
    for p in profiles.values():
        stage_names += [k for k in p["stages_ms_per_batch"] if k not in stage_names]
    rows = [
        [
            name,
            p["memories"],
            fmt_num(stores[name]["batch_add"]["per_s"]),
            fmt_num(p["per_s"]),
            fmt_ms(p["batch_ms_mean"]),
        ]
        + [fmt_ms(p["stages_ms_per_batch"].get(stage)) for stage in stage_names]
        for name, p in profiles.items()
    ]
    return format_table(
        ["store", "memories", "HTTP adds/s", "in-process adds/s", "ms/batch", *stage_names],
        rows,
        "Where a batch-add's time goes, ms per batch (MemoryService.add_memories in-process, after the host stopped)",
    )


def _chroma_probe_table(stores: dict[str, Any]) -> str | None:
    probe = stores.get("chroma", {}).get("profile", {}).get("chroma_server_query_ms")
    if not probe:
        return None
    rows = [[name, fmt_ms(v["ms_p50"]), fmt_ms(v["ms_p95"])] for name, v in probe.items()]
    user = stores["chroma"]["profile"]["user_memories"]
    return format_table(
        ["Chroma collection.query", "p50 ms", "p95 ms"],
        rows,
        f"The Chroma server's own time (chromadb client straight to the server; the user has {user:,} memories)",
    )


def load_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target the run could check; `met` is None where the run did not measure it."""
    targets: list[dict[str, Any]] = []

    def add(name: str, store: str, limit: str, measured: float | None, met: bool | None) -> None:
        targets.append({"target": name, "store": store, "limit": limit, "measured": measured, "met": met})

    imp = result["import_function_app"]["median_s"]
    add("import function_app (s)", "-", f"<= {IMPORT_S}", imp, imp <= IMPORT_S)
    for name, s in result.get("stores", {}).items():
        first = s["startup"]["first_search_s"]
        add("first search after process start (s)", name, f"<= {FIRST_SEARCH_S}", first, first <= FIRST_SEARCH_S)
        rate = s["batch_add"]["per_s"]
        add(
            "batch-add through HTTP (memories/s)",
            name,
            f">= {BATCH_ADD_PER_S:.0f}",
            rate,
            None if rate is None else rate >= BATCH_ADD_PER_S,
        )
        rss = s["worker_peak_rss_mb"]
        add("worker peak RSS (MB)", name, f"<= {PEAK_RSS_MB:.0f}", rss, None if rss is None else rss <= PEAK_RSS_MB)
        row = next((r for r in s["search"] if _is_target_row(r)), None)
        label = f"search p95 via HTTP at {SEARCH_TARGET_USER:,} of >= {SEARCH_TARGET_TOTAL:,} memories (ms)"
        limit_ms = SEARCH_P95_MS.get(name, SEARCH_P95_MS["chroma"])
        p95 = row["ms_p95"] if row else None
        add(label, name, f"<= {limit_ms:.0f}", p95, None if p95 is None else p95 <= limit_ms)
        for size in COLD_SIZES:
            at = next((r for r in s["search"] if r["user_memories"] == size and r.get("cold_user")), None)
            ratio = at["cold_user"]["first_over_warm"] if at else None
            add(
                f"a user's first search on a fresh worker / a warm search, at {size:,} (ratio)",
                name,
                f"<= {COLD_OVER_WARM_MAX}",
                ratio,
                None if ratio is None else ratio <= COLD_OVER_WARM_MAX,
            )
        p = s.get("profile")
        restarted = (p or {}).get("http_restarted_worker_ms_p50")
        if p and restarted is not None and p["service_ms_p50"]:
            share = round((restarted - p["service_ms_p50"]) / p["service_ms_p50"], 3)
            add(
                "(HTTP p50 on a restarted worker - service p50) / service p50",
                name,
                f"<= {HTTP_PART_MAX}",
                share,
                share <= HTTP_PART_MAX,
            )
        if p and p.get("plain_mem0_ms_p50") is not None:
            base = p["plain_mem0_ms_p50"]
            http = overhead(p["http_ms_p50"], base)
            add(
                "search p50 overhead over plain mem0, through HTTP (ratio)",
                name,
                f"<= {OVERHEAD_MAX}",
                http,
                None if http is None else http <= OVERHEAD_MAX,
            )
            inproc = overhead(p["service_ms_p50"], base)
            add(
                "search p50 overhead over plain mem0, in-process (ratio)",
                name,
                f"<= {OVERHEAD_MAX}",
                inproc,
                None if inproc is None else inproc <= OVERHEAD_MAX,
            )
    return targets


def _is_target_row(row: dict[str, Any]) -> bool:
    return bool(row["user_memories"] == SEARCH_TARGET_USER and row["total_memories"] >= SEARCH_TARGET_TOTAL)


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = [
        [
            t["target"],
            t["store"],
            t["limit"],
            "-" if t["measured"] is None else f"{t['measured']:g}",
            {True: "yes", False: "NO", None: "not measured"}[t["met"]],
        ]
        for t in targets
    ]
    return format_table(["target", "store", "limit", "measured", "met"], rows, "Targets")
