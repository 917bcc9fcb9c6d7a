"""Writes docs/benchmarks.md and its SVG charts from the results of run.py."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).resolve().parent / "profile-notes.md"

# Targets of the fan-out, as ratios of figures measured in the same run.
TARGET_WRK = 0.6
TARGET_NODE = 5.0
TARGET_AIOHTTP = 15.0
TARGET_DURABLE = 0.5


def median(summary):
    return summary["median"] if summary and summary.get("runs") else None


def spread(summary):
    """Half the range of the runs, in percent of the median."""
    m = median(summary)
    if not m:
        return ""
    return f" ±{(summary['max'] - summary['min']) / 2 / m * 100:.0f}%"


def number(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b, digits=2):
    return "–" if not a or not b else f"{a / b:.{digits}f}"


def figure(row, key, measure="deliveries_per_second"):
    entry = row.get(key)
    return median(entry[measure]) if entry else None


def wrk_for(results, row):
    """Returns the wrk ceiling to divide the row's figures by: wrk's median from the row's own
    rounds when it took turns with the row's programs, else the ceiling measured up front."""
    own = median(row.get("wrk", {}).get("requests_per_second"))
    return own or median(results.wrk.get(row["scheme"]))


def headline(results, scheme="https", subscriptions=1000, endpoints=16):
    """Returns the fan-out row that the targets are judged on, or the first one measured."""
    rows = [r for r in results.fanout if r["scheme"] == scheme]
    for row in rows:
        if (row["subscriptions"], row["endpoints"]) == (subscriptions, endpoints):
            return row
    with_baselines = [r for r in rows if "node" in r]
    return (with_baselines or rows or [None])[0]


def targets(results):
    """Returns (target, required, measured, met) rows for signed HTTPS fan-out."""
    row = headline(results)
    if row is None:
        return []
    memory = figure(row, "memory")
    wrk = wrk_for(results, row)
    config = f"{row['subscriptions']:,} subscriptions over {row['endpoints']} endpoints"
    out = []

    def add(name, required, a, b):
        value = a / b if a and b else None
        out.append((f"{name} ({config})", required, value, value is not None and value >= required))

    add("signed HTTPS fan-out ÷ wrk ceiling", TARGET_WRK, memory, wrk)
    add("signed HTTPS fan-out ÷ Node.js", TARGET_NODE, memory, figure(row, "node"))
    add("signed HTTPS fan-out ÷ aiohttp", TARGET_AIOHTTP, memory, figure(row, "aiohttp"))
    add("SQLite store ÷ memory store", TARGET_DURABLE, figure(row, "sqlite"), memory)

    # Context rather than targets: CPU time per delivery moves less with the machine's load than
    # deliveries per second do.
    cpu = figure(row, "memory", "cpu_seconds_per_1000")
    for key, name in (("node", "Node.js"), ("aiohttp", "aiohttp")):
        other = figure(row, key, "cpu_seconds_per_1000")
        value = other / cpu if other and cpu else None
        out.append((f"CPU time per delivery, {name} ÷ revdesk ({config})", None, value, None))
    return out


def summary_table(results):
    """Returns the plain-text table that run.py prints at the end."""
    lines = ["", f"{'fan-out':34} {'memory/s':>10} {'sqlite/s':>10} {'÷wrk':>6} {'÷node':>6} {'÷aiohttp':>8}"]
    for row in results.fanout:
        memory = figure(row, "memory")
        wrk = wrk_for(results, row)
        name = f"{row['scheme']} {row['subscriptions']} subs x {row['endpoints']} endpoints"
        lines.append(f"{name:34} {number(memory):>10} {number(figure(row, 'sqlite')):>10} "
                     f"{ratio(memory, wrk):>6} {ratio(memory, figure(row, 'node'), 1):>6} "
                     f"{ratio(memory, figure(row, 'aiohttp'), 1):>8}")
    if results.stores:
        lines.append("")
        lines.append(f"{'server, by store':34} {'deliveries/s':>12} {'server CPU ms/1000':>19} "
                     f"{'PostgreSQL CPU ms/1000':>23}")
        for entry in results.stores:
            database = entry.get("postgres_cpu_seconds_per_1000")
            lines.append(f"{entry['label']:34} {number(median(entry['deliveries_per_second'])):>12} "
                         f"{number(median(entry['server_cpu_seconds_per_1000']) * 1000, 1):>19} "
                         f"{number(median(database) * 1000 if database else None, 1):>23}")
    for name, required, value, met in targets(results):
        shown = "–" if value is None else f"{value:.2f}"
        if required is None:
            lines.append(f"{name}: {shown}")
        else:
            lines.append(f"target {name}: {shown} (needs {required}) {'met' if met else 'NOT met'}")
    return "\n".join(lines)


# --- charts -------------------------------------------------------------------------------------


def make_charts(charts_dir, results):
    """Writes the SVG charts; returns their file names by topic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Text stays text (small files); no date or random ids, so a rerun with equal numbers
    # writes equal files.
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "revdesk", "font.size": 9})
    charts_dir.mkdir(parents=True, exist_ok=True)
    written = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(charts_dir / name, format="svg", metadata={"Date": None})
        plt.close(fig)
        written[name.removesuffix(".svg")] = name

    if results.fanout:
        schemes = [s for s in ("http", "https") if any(r["scheme"] == s for r in results.fanout)]
        fig, axes = plt.subplots(1, len(schemes), figsize=(10, 4), sharey=True, squeeze=False)
        series = [("memory", "revdesk, memory store", "#1f77b4"),
                  ("sqlite", "revdesk, SQLite store", "#7fb3d5"),
                  ("node", "Node.js http Agent", "#2ca02c"),
                  ("aiohttp", "Python aiohttp", "#d62728")]
        for ax, scheme in zip(axes[0], schemes):
            rows = [r for r in results.fanout if r["scheme"] == scheme]
            labels = [f"{r['subscriptions']}×{r['endpoints']}" for r in rows]
            width = 0.2
            for i, (key, label, color) in enumerate(series):
                values = [figure(r, key) or 0 for r in rows]
                positions = [x + (i - 1.5) * width for x in range(len(rows))]
                ax.bar(positions, values, width, label=label, color=color)
            wrk = median(results.wrk.get(scheme))
            if wrk:
                ax.axhline(wrk, color="black", linestyle="--", linewidth=1,
                           label="wrk ceiling, 64 connections")
            ax.set_xticks(range(len(rows)), labels)
            ax.set_xlabel("subscriptions × endpoints")
            ax.set_title(f"signed {scheme.upper()} fan-out")
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].set_ylabel("deliveries per second")
        axes[0][-1].legend(loc="upper right", fontsize=7)
        save(fig, "fanout.svg")

    if results.latency:
        fig, ax = plt.subplots(figsize=(10, 3.6))
        labels = [f"{e['scheme']} {e['store']}\n{e['subscriptions']}×{e['endpoints']}" for e in results.latency]
        width = 0.25
        for i, (key, label) in enumerate((("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))):
            values = [median(e[key]) / 1000 for e in results.latency]
            ax.bar([x + (i - 1) * width for x in range(len(labels))], values, width, label=label)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("publish to 2xx, ms")
        ax.set_title("latency at half of each configuration's peak rate")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "latency.svg")

    if results.index:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        sizes = [e["subscriptions"] for e in results.index]
        ax.plot(sizes, [median(e["ns_per_match"]) for e in results.index], marker="o")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("subscriptions in the index (log)")
        ax.set_ylabel("ns per match")
        ax.set_title("subscription_index::match, one matching subscription")
        ax.grid(alpha=0.3)
        save(fig, "lookup.svg")

    if results.api:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        labels = [f"{e['label']} ({e['store']})" if e["store"] != "-" else e["label"] for e in results.api]
        ax.barh(range(len(labels)), [median(e["requests_per_second"]) or 0 for e in results.api],
                color="#1f77b4")
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("requests per second (wrk, 64 keep-alive connections)")
        ax.grid(axis="x", alpha=0.3)
        save(fig, "api.svg")
    return written


# --- the page -----------------------------------------------------------------------------------


def write_page(output, charts_dir, info, results, profile):
    charts = make_charts(charts_dir, results) if charts_dir else {}
    chart_prefix = ""
    if charts_dir:
        chart_prefix = str(Path("benchmarks")) + "/" if output.parent == charts_dir.parent else str(charts_dir) + "/"
    out = []
    w = out.append
    w("# Benchmarks\n")
    w(f"Written by `benchmarks/run{'' if profile.name == 'full' else ' --' + profile.name}` on "
      f"{info['date']}; the run took {info['seconds'] / 60:.1f} minutes. Rerun the command to refresh "
      "this page rather than editing it; [benchmarks/README.md](../benchmarks/README.md) describes "
      "the harness.\n")
    busy = max(float(x) for x in info["load_before"].split()[:1] + info["load_after"].split()[:1])
    if busy > 0.5:
        w(f"> The machine was not idle: the 1-minute load average was {info['load_before'].split()[0]} "
          f"at the start and {info['load_after'].split()[0]} at the end, so other processes took CPU "
          "time from both sender and receiver. Ratios measured in the same run are more trustworthy "
          "than the absolute figures.\n")

    w("## Setup\n")
    w("| | |\n| --- | --- |")
    for label, key in (("CPU", "cpu"), ("cores", "cores"), ("memory", "memory"), ("kernel", "kernel"),
                       ("system", "os"), ("compiler", "compiler"), ("build type", "build_type"),
                       ("flags", "flags"), ("commit", "commit"), ("receiver", "nginx"),
                       ("OpenSSL", "openssl"), ("wrk", "wrk"), ("Node.js", "node"),
                       ("Python", "python"), ("load average (1, 5, 15 min) before", "load_before"),
                       ("load average after", "load_after")):
        w(f"| {label} | {info.get(key, 'unknown')} |")
    w("")
    w("How it was measured:\n")
    w("- **Sender and receiver share this machine.** The receiver is nginx with one worker "
      "process, answering `200` with an empty body to every POST, on 127.0.0.1 only: 256 HTTP ports "
      "and 256 HTTPS ports (TLS 1.3, a P-256 certificate from a CA generated for the run). Every "
      "fan-out sender runs on one thread; wrk runs two. No traffic leaves the loopback interface.")
    w("- Every delivery carries the same 294-byte JSON body (`benchmarks/data/payload.json`) and "
      "Standard Webhooks headers: `webhook-id`, `webhook-timestamp` and an HMAC-SHA256 "
      "`webhook-signature` computed per delivery with the subscription's secret.")
    w(f"- Every sender keeps at most {64} requests in flight: the dispatcher's `max_in_flight` and "
      "`max_per_origin`, Node's and aiohttp's connection limits, and wrk's connection count.")
    w(f"- Each figure is the **median of {profile.runs} measured runs after a warm-up run**; "
      "`±` gives half the range of those runs relative to the median. Every ratio divides two "
      "medians from this same run. In the rows with Node.js and aiohttp, the programs and wrk take "
      "turns: each round starts every program once, with its own warm-up, so that the shared "
      "machine's slower spells fall on all of them alike.")
    w("- Deliveries per second count the 2xx responses at the sender; the harness checks that "
      "nginx's request counter (`stub_status`) moved by exactly as many requests. CPU time is "
      "`getrusage(RUSAGE_SELF)`, user plus system, of the sending process, all threads included.")
    w("")

    w("## Targets\n")
    w("| target | required | measured | met |\n| --- | --- | --- | --- |")
    for name, required, value, met in targets(results):
        shown_required = "–" if required is None else f"≥ {required}"
        shown_met = "–" if met is None else "yes" if met else "**no**"
        w(f"| {name} | {shown_required} | {'–' if value is None else f'{value:.2f}'} | {shown_met} |")
    w("")

    write_fanout(w, results, charts)
    write_latency(w, results, charts)
    write_api(w, results, charts)
    write_index_and_memory(w, results, charts, profile)
    write_parser(w, results)
    write_stores(w, results, info)
    write_profile(w, results)
    w("## Reproduce\n")
    w("```sh\nbenchmarks/run            # everything, about 10 minutes on 2 cores\n"
      "benchmarks/run --quick    # fewer configurations, under 2 minutes\n"
      "benchmarks/run --smoke    # tiny sizes, checks only, for CI\n```\n")
    w("Raw results of the latest run: `build/benchmarks/results-PROFILE.json`.\n")
    text = "\n".join(out).replace("](benchmarks/", f"]({chart_prefix}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)


def write_fanout(w, results, charts):
    w("## 1. Fan-out throughput\n")
    w("One published event fans out to every subscription; the harness keeps publishing so that "
      "deliveries never run dry, and reports deliveries per second over a batch. Subscriptions are "
      "spread round-robin over the endpoints (distinct ports of the receiver, reached by the names "
      "`rJ.bench.test` that an injected resolver maps to 127.0.0.1). The ceiling is wrk "
      f"posting the same body and headers to the same receiver with 64 connections "
      f"(2 threads): {number(median(results.wrk.get('http')))} requests/s over HTTP"
      f" ({spread(results.wrk.get('http')).strip() or '–'}) and "
      f"{number(median(results.wrk.get('https')))} over HTTPS"
      f" ({spread(results.wrk.get('https')).strip() or '–'}), measured before the fan-out runs. "
      "In the rows with Node.js and aiohttp, wrk also takes a turn in every round, and ÷ wrk "
      "divides by its median from those rounds, given under each table.\n")
    if "fanout" in charts:
        w(f"![Fan-out throughput](benchmarks/{charts['fanout']})\n")
    for scheme in ("http", "https"):
        rows = [r for r in results.fanout if r["scheme"] == scheme]
        if not rows:
            continue
        w(f"Signed {scheme.upper()}, memory store:\n")
        w("| subscriptions | endpoints | deliveries/s | ÷ wrk | CPU ms per 1,000 | Node.js/s | "
          "Node CPU ms | aiohttp/s | aiohttp CPU ms | ÷ Node | ÷ aiohttp |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            memory = figure(r, "memory")
            cpu = lambda key: number((figure(r, key, "cpu_seconds_per_1000") or 0) * 1000 or None, 1)
            w(f"| {r['subscriptions']:,} | {r['endpoints']} | {number(memory)}"
              f"{spread(r.get('memory', {}).get('deliveries_per_second'))} | "
              f"{ratio(memory, wrk_for(results, r))} | "
              f"{cpu('memory')} | {number(figure(r, 'node'))} | {cpu('node')} | "
              f"{number(figure(r, 'aiohttp'))} | {cpu('aiohttp')} | "
              f"{ratio(memory, figure(r, 'node'), 1)} | {ratio(memory, figure(r, 'aiohttp'), 1)} |")
        alongside = [f"{r['subscriptions']:,} over {r['endpoints']}: "
                     f"{number(median(r['wrk']['requests_per_second']))}"
                     f"{spread(r['wrk']['requests_per_second'])}"
                     for r in rows if median(r.get("wrk", {}).get("requests_per_second"))]
        if alongside:
            w("")
            w(f"wrk in the same rounds, requests/s: {'; '.join(alongside)}.")
        w("")
    w("## 2. Durable fan-out (SQLite store)\n")
    w("The same runs through `revdesk::sqlite_store` (WAL, `synchronous=FULL`, group commit): "
      "every event and every attempt is committed to disk before it counts.\n")
    w("| scheme | subscriptions | endpoints | memory/s | SQLite/s | SQLite ÷ memory | SQLite CPU ms per 1,000 |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results.fanout:
        memory, sqlite = figure(r, "memory"), figure(r, "sqlite")
        cpu = figure(r, "sqlite", "cpu_seconds_per_1000")
        w(f"| {r['scheme']} | {r['subscriptions']:,} | {r['endpoints']} | {number(memory)} | "
          f"{number(sqlite)}{spread(r.get('sqlite', {}).get('deliveries_per_second'))} | "
          f"{ratio(sqlite, memory)} | {number(cpu * 1000 if cpu else None, 1)} |")
    w("")


def write_latency(w, results, charts):
    w("## 3. Publish-to-receipt latency\n")
    w("Events are published on a fixed schedule (open loop) at half of the peak rate that section 1 "
      "or 2 measured for the same configuration. Each sample runs from the event's *scheduled* "
      "publish time to the moment the receiver's 2xx reaches the dispatcher, so it includes the "
      "store's commit, queueing, signing, the request, nginx and the response; the receipt itself "
      "happened at most one loopback response earlier. A publisher that falls behind its schedule "
      "shows up as latency rather than hiding it.\n")
    if "latency" in charts:
        w(f"![Latency](benchmarks/{charts['latency']})\n")
    w("| scheme | store | subscriptions | endpoints | deliveries/s | p50 ms | p99 ms | p99.9 ms | "
      "max ms | samples per run |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in results.latency:
        ms = lambda key: number(median(e[key]) / 1000, 2)
        w(f"| {e['scheme']} | {e['store']} | {e['subscriptions']:,} | {e['endpoints']} | "
          f"{number(e['rate'])} | {ms('p50_us')} | {ms('p99_us')} | {ms('p999_us')} | {ms('max_us')} | "
          f"{e['samples_per_run']:,} |")
    w("")


def write_api(w, results, charts):
    w("## 4. API requests per second\n")
    w("wrk (2 threads, 64 keep-alive connections) posts the same body on every request, with a "
      "Bearer key, to `revdesk-server` and, as the baseline, to `revdesk::http::server` answering a "
      "static 202 (`benchmarks/static_server.cpp`). The server runs its API on one thread. Events "
      "are published to a workspace without subscriptions, so no deliveries are made; each "
      "subscription request stores a new subscription. The server logs one line per request to a "
      "file, as it does by default.\n")
    if "api" in charts:
        w(f"![API](benchmarks/{charts['api']})\n")
    static = next((median(e["requests_per_second"]) for e in results.api if e["store"] == "-"), None)
    w("| request | store | requests/s | ÷ static response |\n| --- | --- | ---: | ---: |")
    for e in results.api:
        value = median(e["requests_per_second"])
        w(f"| {e['label']} | {e['store']} | {number(value)}{spread(e['requests_per_second'])} | "
          f"{ratio(value, static)} |")
    w("")


def write_index_and_memory(w, results, charts, profile):
    w("## 5. Subscription lookup and resident memory\n")
    w("`subscription_index::match` for an event of one workspace and type with two scopes (four "
      "buckets probed) while the index grows; the other subscriptions share the workspace, the type "
      "or a scope, but exactly one matches.\n")
    if "lookup" in charts:
        w(f"![Lookup](benchmarks/{charts['lookup']})\n")
    w("| subscriptions | ns per match |\n| ---: | ---: |")
    for e in results.index:
        w(f"| {e['subscriptions']:,} | {number(median(e['ns_per_match']))}{spread(e['ns_per_match'])} |")
    w("")
    w(f"Resident set size (VmRSS) of `revdesk-bench-fanout --mode memory`: empty (dispatcher, "
      f"client and store created), after storing {profile.memory_subscriptions:,} subscriptions "
      f"(index and store), and after one event opened {profile.memory_connections:,} keep-alive "
      f"connections to {profile.memory_endpoints} receiver ports, which stay idle in the client's "
      "pool.\n")
    w("| scheme | store | empty MiB | with subscriptions MiB | with connections MiB | per subscription | "
      "per connection |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for m in results.memory:
        empty, subs, conns = (m["rss_empty_bytes"], m["rss_subscriptions_bytes"], m["rss_connections_bytes"])
        per_sub = (subs - empty) / max(1, profile.memory_subscriptions)
        per_conn = (conns - subs) / max(1, m["connections"])
        w(f"| {m['scheme']} | {m['store']} | {empty / 2**20:.1f} | {subs / 2**20:.1f} | "
          f"{conns / 2**20:.1f} | {per_sub:,.0f} B | {per_conn / 1024:,.1f} KiB |")
    w("")


def write_parser(w, results):
    w("## 6. HTTP parser against llhttp\n")
    w("`revdesk::http::request_parser` against llhttp, Node.js's parser, on the same requests; "
      "[benchmarks/parser/README.md](../benchmarks/parser/README.md) describes the samples and "
      "the two llhttp modes.\n")
    if results.parser:
        w(f"`{results.parser['command']}`:\n")
        w("```\n" + results.parser["output"] + "\n```\n")
    else:
        w("Not measured in this run: `revdesk-bench-parser` was not built (it needs Debian's "
          "`node-llhttp`).\n")


def write_stores(w, results, info):
    w("## 7. Delivery through revdesk-server: SQLite and PostgreSQL\n")
    setup = results.store_setup
    if not setup:
        w("Not measured in this run.\n")
        return
    w(f"The real server binary, end to end: the harness creates {setup['subscriptions']} "
      f"subscriptions over the API, spread round-robin over {setup['endpoints']} HTTP ports of the "
      f"receiver, then publishes {setup['events_per_run']:,} events "
      f"(`POST /api/v1/events`, {setup['events_per_run'] * setup['subscriptions']:,} deliveries) over "
      f"{setup['publish_connections']} keep-alive connections split evenly over the servers. A run "
      "lasts from the first publish until the sum of "
      "`revdesk_delivery_attempts_total{outcome=\"delivered\"}` over every server's `/metrics` "
      "reaches that count, polled every 20 ms. Each configuration starts on an empty database; one "
      f"warm-up run of {setup['warmup_events']:,} events precedes {setup['runs']} measured "
      f"run{'s' if setup['runs'] != 1 else ''}, and the figures are medians. The harness checks that nginx counted exactly one "
      "request per delivery, that no attempt was retried, failed or cancelled, and at the end "
      "that the database holds every delivery in the state `delivered`.\n")
    w(f"PostgreSQL {setup['postgresql']} is a throw-away cluster that the harness creates in its "
      "work directory (`initdb`, trust authentication, 127.0.0.1 and a unix socket in that "
      "directory) and removes at the end. Its durability settings keep their defaults: "
      f"`fsync = {setup['fsync']}`, `synchronous_commit = {setup['synchronous_commit']}`, so every "
      "commit is flushed to the write-ahead log before it is acknowledged, as the SQLite store "
      "syncs its WAL at every commit (`synchronous = FULL`). Every other setting is the default "
      "of `initdb`.\n")
    cores = info.get("cores", "the")
    w(f"> **Everything shares {cores} cores**: the servers, PostgreSQL, nginx and the publishing "
      "harness. A second server on the same cores adds no CPU time to deliver with, so the "
      "two-node figures show that the shared queue works under load (leases, `SKIP LOCKED` "
      "claims, notifications between the servers) and what it costs, not how it scales out.\n")
    by_key = {(e["store"], e["nodes"]): e for e in results.stores}
    sqlite, one, two = (by_key.get(k) for k in (("sqlite", 1), ("postgresql", 1), ("postgresql", 2)))

    def rate(entry):
        return median(entry["deliveries_per_second"]) if entry else None

    def cpu(entry, key):
        value = median(entry[key]) if entry and entry.get(key) else None
        return number(value * 1000 if value is not None else None, 1)

    def total_cpu(entry):
        if not entry:
            return None
        server = median(entry["server_cpu_seconds_per_1000"]) or 0
        database = median(entry["postgres_cpu_seconds_per_1000"]) if entry.get("postgres_cpu_seconds_per_1000") else 0
        return (server + database) * 1000

    w("| configuration | deliveries per run | deliveries/s | server CPU ms per 1,000 | "
      "PostgreSQL CPU ms per 1,000 | total CPU ms per 1,000 | deliveries by node |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for entry in results.stores:
        shares = " / ".join(f"{share * 100:.0f}%" for share in entry["node_shares"])
        w(f"| {entry['label']} | {entry['deliveries_per_run']:,} | {number(rate(entry))}"
          f"{spread(entry['deliveries_per_second'])} | {cpu(entry, 'server_cpu_seconds_per_1000')} | "
          f"{cpu(entry, 'postgres_cpu_seconds_per_1000')} | {number(total_cpu(entry), 1)} | {shares} |")
    w("")
    w("| ratio | deliveries/s |\n| --- | ---: |")
    w(f"| PostgreSQL, 1 node ÷ SQLite | {ratio(rate(one), rate(sqlite))} |")
    w(f"| PostgreSQL, 2 nodes ÷ 1 node | {ratio(rate(two), rate(one))} |")
    w("")
    w("CPU time is user plus system time from `/proc/PID/stat`, read before the first publish and "
      "after the last delivery of each run: for the servers, every thread of each "
      "`revdesk-server` process, so it includes the API, the metrics the harness polls and, with "
      "SQLite, the store itself, which runs on a thread of the server; for PostgreSQL, the "
      "postmaster, every process it runs (the servers' backends, the WAL writer, the "
      "checkpointer, autovacuum) and the ones that ended during the run. nginx and the harness "
      "are not counted.\n")
    w("The servers ran with these flags (the API key comes from `REVDESK_API_KEY`; every other "
      "option keeps its default, such as `--max-in-flight 512`, `--max-per-origin 16` and, with "
      "PostgreSQL, `--pool-size 4`):\n")
    w("```sh")
    for entry in results.stores:
        w(f"# {entry['label']}")
        for command in entry["commands"]:
            w(command)
    w("```\n")


def write_profile(w, results):
    w("## What stands in the way\n")
    p = results.perf
    if p:
        w(f"`{p['command']}`, sampled at 999 Hz. Shares of the sender's CPU samples by library, "
          "then the top functions by their own samples:\n")
        w("| library | share |\n| --- | ---: |")
        for share, name in p.get("dso", [])[:8]:
            w(f"| `{name}` | {share:.1f}% |")
        w("")
        w("| function | share |\n| --- | ---: |")
        for share, name in p.get("symbol", [])[:20]:
            w(f"| `{shorten(name)}` | {share:.1f}% |")
        w("")
    else:
        w("No profile in this run (it is part of the full run only, and needs `perf`).\n")
    if NOTES.exists():
        w(NOTES.read_text().strip() + "\n")


def shorten(symbol, limit=110):
    symbol = re.sub(r"(\s+-)+$", "", symbol).strip()
    return symbol if len(symbol) <= limit else symbol[: limit - 1] + "…"
