"""Runs the revdesk benchmark suite against loopback receivers and writes the results page.

Called by benchmarks/run, which installs the packages and builds the programs first. Every figure
is the median of repeated runs after a warm-up, and every baseline is measured in the same
invocation on the same receiver. See benchmarks/README.md.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import machine
import report
from postgres import PostgresCluster, process_cpu_seconds
from receiver import Nginx, find_free_ports

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PAYLOAD = BENCH / "data" / "payload.json"
WRK_SCRIPT = BENCH / "wrk" / "post.lua"
PYTHON = "/usr/bin/python3"  # Debian's interpreter, which has python3-aiohttp and matplotlib.

# Concurrency of every fan-out client, and the connection count of wrk: the dispatcher's
# max_in_flight, Node's and aiohttp's connection limit.
CONNECTIONS = 64
WRK_THREADS = 2

# The API key of every revdesk-server that the suite starts (REVDESK_API_KEY, workspace default).
API_KEY = "rdk_benchmark_key_0123456789"
# Connections that publish events in the store benchmark, split evenly over the servers.
PUBLISH_CONNECTIONS = 8


@dataclass
class Profile:
    name: str
    runs: int  # measured runs per figure, after one warm-up
    target_seconds: float  # length of one measured fan-out batch
    warmup_deliveries: int
    min_deliveries: int
    fanout: list  # (subscriptions, endpoints) pairs
    stores: list
    baselines: list  # (subscriptions, endpoints) pairs that Node and aiohttp run
    baseline_warmup: int
    latency: list  # (subscriptions, endpoints) pairs
    latency_seconds: float
    latency_warmup_seconds: float
    wrk_seconds: float
    api_seconds: float
    index_sizes: list
    index_seconds: float
    parser_args: list  # options of revdesk-bench-parser
    memory_subscriptions: int
    memory_connections: int
    memory_endpoints: int
    profile_seconds: float  # 0: no perf profile
    # Delivery through revdesk-server with each store: subscriptions over endpoints (HTTP ports
    # of the receiver), events published per measured run and in the warm-up run.
    server_subscriptions: int
    server_endpoints: int
    server_events: int
    server_warmup_events: int


FULL_MATRIX = [(1, 1), (64, 1), (64, 16), (1000, 1), (1000, 16), (1000, 256)]

PROFILES = {
    "full": Profile(
        name="full", runs=5, target_seconds=1.0, warmup_deliveries=3000, min_deliveries=2000,
        fanout=FULL_MATRIX, stores=["memory", "sqlite"],
        baselines=[(64, 1), (1000, 16), (1000, 256)], baseline_warmup=1000,
        latency=[(1, 1), (64, 16)], latency_seconds=2.0, latency_warmup_seconds=0.5,
        wrk_seconds=2.0, api_seconds=2.0,
        index_sizes=[1, 10, 100, 1000, 10_000, 100_000], index_seconds=0.2,
        parser_args=["--repetitions", "9"],
        memory_subscriptions=100_000, memory_connections=1000, memory_endpoints=250,
        profile_seconds=4.0,
        server_subscriptions=64, server_endpoints=16, server_events=400, server_warmup_events=100,
    ),
    "quick": Profile(
        name="quick", runs=3, target_seconds=0.3, warmup_deliveries=1000, min_deliveries=1000,
        fanout=[(1, 1), (64, 16), (1000, 256)], stores=["memory", "sqlite"],
        baselines=[(64, 16)], baseline_warmup=300,
        latency=[(64, 16)], latency_seconds=0.7, latency_warmup_seconds=0.2,
        wrk_seconds=1.0, api_seconds=1.0,
        index_sizes=[1, 100, 10_000, 100_000], index_seconds=0.05,
        parser_args=["--iterations", "50000", "--repetitions", "5"],
        memory_subscriptions=100_000, memory_connections=1000, memory_endpoints=250,
        profile_seconds=0,
        server_subscriptions=64, server_endpoints=16, server_events=100, server_warmup_events=50,
    ),
    "smoke": Profile(
        name="smoke", runs=1, target_seconds=0.0, warmup_deliveries=64, min_deliveries=128,
        fanout=[(64, 16)], stores=["memory", "sqlite"],
        baselines=[(64, 16)], baseline_warmup=64,
        latency=[(64, 16)], latency_seconds=0.3, latency_warmup_seconds=0.1,
        wrk_seconds=0.5, api_seconds=0.5,
        index_sizes=[1, 1000], index_seconds=0.01,
        parser_args=["--iterations", "1000", "--repetitions", "1", "--warmup", "1"],
        memory_subscriptions=1000, memory_connections=32, memory_endpoints=16,
        profile_seconds=0,
        server_subscriptions=16, server_endpoints=4, server_events=8, server_warmup_events=4,
    ),
}


@dataclass
class Results:
    profile: str
    fanout: list = field(default_factory=list)  # one dict per configuration
    wrk: dict = field(default_factory=dict)  # scheme -> summary
    latency: list = field(default_factory=list)
    api: list = field(default_factory=list)
    index: list = field(default_factory=list)
    memory: list = field(default_factory=list)
    perf: dict = field(default_factory=dict)
    parser: dict = field(default_factory=dict)  # command and output of revdesk-bench-parser
    stores: list = field(default_factory=list)  # delivery through revdesk-server, per configuration
    store_setup: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)  # (name, passed, detail)

    def check(self, name, passed, detail=""):
        self.checks.append((name, bool(passed), detail))
        if not passed:
            print(f"  FAILED {name}: {detail}", flush=True)


class Suite:
    def __init__(self, profile, build_dir, work_dir):
        self.p = profile
        self.build_dir = build_dir
        self.work_dir = work_dir
        self.results = Results(profile=profile.name)
        self.nginx = None

    # --- helpers ---------------------------------------------------------------------------

    def binary(self, name):
        candidates = [self.build_dir / "benchmarks" / name, self.build_dir / "reference-server" / name]
        for path in candidates:
            if path.exists():
                return path
        raise RuntimeError(f"{name} not found under {self.build_dir}: build it first (benchmarks/run does)")

    def receiver_args(self):
        return [
            "--http-port", str(self.nginx.http_port),
            "--https-port", str(self.nginx.https_port),
            "--ca-file", str(self.nginx.ca_file),
            "--payload", str(PAYLOAD),
        ]

    def run_json(self, command, name, timeout=600):
        """Runs a program that prints JSON lines; returns the parsed lines, or None on failure.
        Compares the deliveries it reports with the requests nginx counted meanwhile."""
        before = self.nginx.requests()
        started = time.monotonic()
        result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                                timeout=timeout)
        took = time.monotonic() - started
        after = self.nginx.requests()
        if result.returncode != 0:
            self.results.check(name, False, f"exit status {result.returncode}: {result.stderr.strip()[-500:]}")
            return None
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        total = sum(line["deliveries"] for line in lines if line.get("kind") == "total")
        failed = sum(line.get("failed", 0) for line in lines if line.get("kind") != "total")
        # Each status read is itself a request, so the counter moved by one for the second read.
        received = after - before - 1
        self.results.check(f"{name}: no failed deliveries", failed == 0,
                           f"{failed} failed; last: {next((l.get('last_failure') for l in lines if l.get('last_failure')), '')}")
        self.results.check(f"{name}: receiver counted every delivery", received == total,
                           f"sender counted {total} 2xx, nginx counted {received} requests")
        if took > 120:
            print(f"  note: {name} took {took:.0f} s", flush=True)
        return lines

    @staticmethod
    def measured(lines, kind="fanout"):
        return [l for l in lines if l.get("kind") == kind and not l.get("warmup")]

    @staticmethod
    def summarize(values):
        values = list(values)
        if not values:
            return {"median": 0.0, "min": 0.0, "max": 0.0, "runs": 0}
        return {"median": statistics.median(values), "min": min(values), "max": max(values),
                "runs": len(values)}

    def fanout_command(self, program, scheme, store, subscriptions, endpoints, warmup, runs):
        p = self.p
        common = self.receiver_args() + [
            "--scheme", scheme, "--subscriptions", subscriptions, "--endpoints", endpoints,
            "--concurrency", CONNECTIONS, "--warmup-deliveries", warmup,
            "--min-deliveries", p.min_deliveries, "--target-seconds", p.target_seconds,
            "--runs", runs,
        ]
        if program == "revdesk":
            return [self.binary("revdesk-bench-fanout"), "--mode", "throughput", "--store", store,
                    "--per-origin", CONNECTIONS, "--sqlite-path", self.work_dir / "fanout.db",
                    *common]
        if program == "node":
            return ["node", BENCH / "baselines" / "node_fanout.mjs", *common]
        return [PYTHON, BENCH / "baselines" / "aiohttp_fanout.py", *common]

    # --- 1, 2: fan-out throughput ----------------------------------------------------------

    def run_wrk(self, url, seconds, body, headers, connections=CONNECTIONS):
        """Returns requests per second of one wrk run, or None when it failed or saw errors."""
        env = dict(os.environ, REVDESK_WRK_BODY=str(body), REVDESK_WRK_HEADERS=str(headers))
        # wrk takes whole seconds only.
        command = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                   "-s", str(WRK_SCRIPT), url]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60)
        out = result.stdout
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        ok = result.returncode == 0 and rate and not errors
        self.results.check(f"wrk {url}", ok, (out + result.stderr).strip()[-400:])
        if socket_errors:
            print(f"  note: wrk {url}: socket errors {socket_errors.group(1)}", flush=True)
        return float(rate.group(1)) if ok else None

    def delivery_headers_file(self):
        # The fields of one dispatcher delivery, with a fixed signature: wrk sends the same bytes
        # on every request.
        path = self.work_dir / "delivery-headers.txt"
        path.write_text(
            "Content-Type: application/json\n"
            "User-Agent: revdesk-webhooks/0.1.0\n"
            "RevDesk-Event-Type: call_completed\n"
            "webhook-id: msg_aaaaaaaaaaaaaaaaaaaaaaaaaa\n"
            "webhook-timestamp: 1796406633\n"
            "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=\n"
        )
        return path

    def wrk_target(self, scheme):
        """Returns the URL and the header file with which wrk measures the ceiling."""
        port = self.nginx.http_port if scheme == "http" else self.nginx.https_port
        return f"{scheme}://127.0.0.1:{port}/hooks/0", self.delivery_headers_file()

    def measure_wrk_ceiling(self):
        for scheme in ("http", "https"):
            url, headers = self.wrk_target(scheme)
            self.run_wrk(url, 1, PAYLOAD, headers)  # warm-up
            rates = [self.run_wrk(url, self.p.wrk_seconds, PAYLOAD, headers) for _ in range(self.p.runs)]
            rates = [r for r in rates if r]
            self.results.wrk[scheme] = self.summarize(rates)
            print(f"  wrk {scheme:5} {self.results.wrk[scheme]['median']:>10,.0f} req/s", flush=True)

    def measure_fanout(self):
        p = self.p
        for scheme in ("http", "https"):
            for subscriptions, endpoints in p.fanout:
                row = {"scheme": scheme, "subscriptions": subscriptions, "endpoints": endpoints}
                # (key in the row, program, store)
                programs = [(store, "revdesk", store) for store in p.stores]
                # A row with baselines runs each program once per round, each time after its own
                # warm-up, so that the shared machine's slower and faster spells fall on every
                # program alike and the ratios compare like with like.
                rounds, runs_per_process = 1, p.runs
                with_baselines = (subscriptions, endpoints) in p.baselines
                if with_baselines:
                    programs += [("node", "node", "none"), ("aiohttp", "aiohttp", "none")]
                    rounds, runs_per_process = p.runs, 1
                    # wrk takes its turn too, so that the row's ratio to the ceiling does not
                    # depend on how busy the machine was when the ceiling was measured.
                    wrk_url, wrk_headers = self.wrk_target(scheme)
                    self.run_wrk(wrk_url, 1, PAYLOAD, wrk_headers)  # warm-up
                    wrk_rates = []
                measured = {key: [] for key, _, _ in programs}
                for _ in range(rounds):
                    if with_baselines:
                        wrk_rates.append(self.run_wrk(wrk_url, p.wrk_seconds, PAYLOAD, wrk_headers))
                    for key, program, store in programs:
                        warmup = p.warmup_deliveries if program == "revdesk" else p.baseline_warmup
                        command = self.fanout_command(program, scheme, store, subscriptions, endpoints,
                                                      warmup, runs_per_process)
                        name = f"fan-out {key} {scheme} {subscriptions}x{endpoints}"
                        lines = self.run_json(command, name)
                        if lines is not None:
                            measured[key] += self.measured(lines)
                for key, runs in measured.items():
                    if not runs:
                        continue
                    name = f"fan-out {key} {scheme} {subscriptions}x{endpoints}"
                    row[key] = {
                        "deliveries_per_second": self.summarize(r["deliveries_per_second"] for r in runs),
                        "cpu_seconds_per_1000": self.summarize(r["cpu_seconds_per_1000"] for r in runs),
                        "deliveries_per_run": runs[0]["deliveries"] if runs else 0,
                    }
                    print(f"  {name:38} {row[key]['deliveries_per_second']['median']:>10,.0f} deliveries/s "
                          f"{row[key]['cpu_seconds_per_1000']['median'] * 1000:7.1f} ms CPU/1000", flush=True)
                if with_baselines:
                    row["wrk"] = {"requests_per_second": self.summarize(r for r in wrk_rates if r)}
                    name = f"wrk {scheme} alongside {subscriptions}x{endpoints}"
                    print(f"  {name:38} {row['wrk']['requests_per_second']['median']:>10,.0f} req/s",
                          flush=True)
                self.results.fanout.append(row)

    # --- 3: latency -------------------------------------------------------------------------

    def measure_latency(self):
        p = self.p
        for scheme in ("http", "https"):
            for subscriptions, endpoints in p.latency:
                for store in p.stores:
                    peak = self.peak(scheme, subscriptions, endpoints, store)
                    if not peak:
                        continue
                    rate = 0.5 * peak
                    name = f"latency {store} {scheme} {subscriptions}x{endpoints}"
                    command = [self.binary("revdesk-bench-fanout"), "--mode", "latency", "--store", store,
                               "--sqlite-path", self.work_dir / "latency.db", *self.receiver_args(),
                               "--scheme", scheme, "--subscriptions", subscriptions,
                               "--endpoints", endpoints, "--concurrency", CONNECTIONS,
                               "--per-origin", CONNECTIONS, "--rate", f"{rate:.1f}",
                               "--seconds", p.latency_seconds,
                               "--warmup-seconds", p.latency_warmup_seconds, "--runs", p.runs]
                    lines = self.run_json(command, name)
                    if lines is None:
                        continue
                    runs = self.measured(lines, "latency")
                    complete = all(r["deliveries"] == r["expected_deliveries"] for r in runs)
                    self.results.check(f"{name}: every measured delivery arrived", complete,
                                       str([(r["deliveries"], r["expected_deliveries"]) for r in runs]))
                    entry = {"scheme": scheme, "store": store, "subscriptions": subscriptions,
                             "endpoints": endpoints, "rate": rate, "peak": peak}
                    for q in ("p50_us", "p99_us", "p999_us", "max_us"):
                        entry[q] = self.summarize(r[q] for r in runs)
                    entry["samples_per_run"] = runs[0]["deliveries"] if runs else 0
                    self.results.latency.append(entry)
                    print(f"  {name:38} at {rate:>8,.0f}/s  p50 {entry['p50_us']['median'] / 1000:7.2f} ms"
                          f"  p99 {entry['p99_us']['median'] / 1000:7.2f} ms"
                          f"  p99.9 {entry['p999_us']['median'] / 1000:7.2f} ms", flush=True)

    def peak(self, scheme, subscriptions, endpoints, store):
        for row in self.results.fanout:
            if (row["scheme"], row["subscriptions"], row["endpoints"]) == (scheme, subscriptions, endpoints):
                figure = row.get(store)
                return figure["deliveries_per_second"]["median"] if figure else None
        return None

    # --- 4: API -----------------------------------------------------------------------------

    def start_server(self, command, port, env=None):
        log = open(self.work_dir / f"server-{port}.log", "w")
        process = subprocess.Popen([str(c) for c in command], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.close()
                tail = Path(log.name).read_text(errors="replace")[-1500:].strip()
                raise RuntimeError(f"{command[0]} exited with status {process.returncode} before "
                                   f"it listened; the end of {log.name}:\n{tail or '(empty)'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return process, log
            except OSError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"{command[0]} did not listen on 127.0.0.1:{port} within 20 s")

    @staticmethod
    def stop_server(process, log):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()

    def measure_api(self):
        p = self.p
        key = API_KEY
        payload = PAYLOAD.read_text()
        event_body = self.work_dir / "event-body.json"
        event_body.write_text('{"event_type":"call_completed","payload":' + payload + "}")
        subscription_body = self.work_dir / "subscription-body.json"
        subscription_body.write_text(
            '{"webhook_url":"https://127.0.0.1:%d/hooks/api","event_type":"call_completed"}'
            % self.nginx.https_port)
        headers = self.work_dir / "api-headers.txt"
        headers.write_text(f"Content-Type: application/json\nAuthorization: Bearer {key}\n")

        cases = [
            ("static response (revdesk::http::server)", "static", None, "/api/v1/events", event_body),
            ("POST /api/v1/events", "server", "memory:", "/api/v1/events", event_body),
            ("POST /api/v1/webhook_subscriptions", "server", "memory:",
             "/api/v1/webhook_subscriptions", subscription_body),
            ("POST /api/v1/events", "server", "sqlite", "/api/v1/events", event_body),
            ("POST /api/v1/webhook_subscriptions", "server", "sqlite",
             "/api/v1/webhook_subscriptions", subscription_body),
        ]
        for label, kind, store, path, body in cases:
            port = find_free_ports(1, candidates=range(20000, 20100))
            if kind == "static":
                command = [self.binary("revdesk-bench-static-server"), "--port", port]
                env = None
            else:
                db = self.work_dir / "api.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                spec = store if store == "memory:" else f"sqlite:{db}"
                command = [self.binary("revdesk-server"), "--listen", f"127.0.0.1:{port}",
                           "--store", spec, "--allow-target", "127.0.0.0/8"]
                env = dict(os.environ, REVDESK_API_KEY=key)
            process, log = self.start_server(command, port, env)
            try:
                url = f"http://127.0.0.1:{port}{path}"
                self.run_wrk(url, 1, body, headers)  # warm-up
                rates = [self.run_wrk(url, p.api_seconds, body, headers) for _ in range(p.runs)]
            finally:
                self.stop_server(process, log)
            rates = [r for r in rates if r]
            store_name = {"memory:": "memory", "sqlite": "sqlite", None: "-"}[store]
            entry = {"label": label, "store": store_name, "requests_per_second": self.summarize(rates)}
            self.results.api.append(entry)
            print(f"  {label:44} {store_name:7} {entry['requests_per_second']['median']:>10,.0f} req/s", flush=True)

    # --- 5: lookup and memory ---------------------------------------------------------------

    def measure_index(self):
        p = self.p
        command = [self.binary("revdesk-bench-index"), "--sizes", ",".join(map(str, p.index_sizes)),
                   "--runs", str(p.runs), "--target-seconds", str(p.index_seconds)]
        result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)
        self.results.check("subscription lookup", result.returncode == 0, result.stderr.strip()[-400:])
        if result.returncode != 0:
            return
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        for size in p.index_sizes:
            runs = [l for l in lines if l["subscriptions"] == size and not l["warmup"]]
            self.results.check(f"subscription lookup at {size}: one match",
                               all(r["matches"] == 1 for r in runs), str(runs[:1]))
            entry = {"subscriptions": size, "ns_per_match": self.summarize(r["ns_per_match"] for r in runs)}
            self.results.index.append(entry)
            print(f"  lookup with {size:>7,} subscriptions {entry['ns_per_match']['median']:8.0f} ns", flush=True)

    def measure_memory(self):
        p = self.p
        per_origin = max(1, p.memory_connections // p.memory_endpoints)
        for scheme, store in (("http", "memory"), ("https", "memory"), ("https", "sqlite")):
            name = f"memory {store} {scheme}"
            command = [self.binary("revdesk-bench-fanout"), "--mode", "memory", "--store", store,
                       "--sqlite-path", self.work_dir / "memory.db", *self.receiver_args(),
                       "--scheme", scheme, "--subscriptions", p.memory_subscriptions,
                       "--connections", p.memory_connections, "--endpoints", p.memory_endpoints,
                       "--per-origin", per_origin, "--concurrency", p.memory_connections]
            lines = self.run_json(command, name)
            if lines is None:
                continue
            line = next(l for l in lines if l.get("kind") == "memory")
            self.results.check(f"{name}: {p.memory_connections} connections open",
                               line["connections"] == p.memory_connections,
                               f"{line['connections']} idle connections in the pool")
            line["scheme"], line["store"] = scheme, store
            self.results.memory.append(line)
            print(f"  {name:22} empty {line['rss_empty_bytes'] / 2**20:6.1f} MiB, "
                  f"+{line['subscriptions']:,} subscriptions {line['rss_subscriptions_bytes'] / 2**20:6.1f} MiB, "
                  f"+{line['connections']} connections {line['rss_connections_bytes'] / 2**20:6.1f} MiB",
                  flush=True)

    # --- 6: HTTP parser -------------------------------------------------------------------------

    def measure_parser(self):
        """Runs revdesk-bench-parser (benchmarks/parser/) when it was built, and keeps its table."""
        binary = self.build_dir / "benchmarks" / "parser" / "revdesk-bench-parser"
        if not binary.exists():
            print("  revdesk-bench-parser was not built (needs node-llhttp): skipped", flush=True)
            return
        command = [str(binary), *self.p.parser_args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        self.results.check("HTTP parser against llhttp", result.returncode == 0,
                           result.stderr.strip()[-400:])
        if result.returncode == 0:
            shown = ["revdesk-bench-parser", *self.p.parser_args]
            self.results.parser = {"command": " ".join(shown), "output": result.stdout.rstrip()}
            print("  " + result.stdout.rstrip().replace("\n", "\n  "), flush=True)

    # --- 7: delivery through revdesk-server, by store -----------------------------------------

    STORE_CONFIGURATIONS = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)]

    def measure_stores(self):
        """Publishes events through the API of revdesk-server with the SQLite store, then with
        PostgreSQL behind one and behind two servers, and measures deliveries per second from the
        first publish until the last delivery is done."""
        p = self.p
        cluster = PostgresCluster(self.work_dir)
        try:
            cluster.start()
            self.results.store_setup = {
                "postgresql": cluster.version(),
                "fsync": cluster.sql("SHOW fsync"),
                "synchronous_commit": cluster.sql("SHOW synchronous_commit"),
                "subscriptions": p.server_subscriptions,
                "endpoints": p.server_endpoints,
                "events_per_run": p.server_events,
                "warmup_events": p.server_warmup_events,
                "publish_connections": PUBLISH_CONNECTIONS,
                "runs": p.runs,
            }
            self.results.check("PostgreSQL syncs its commits",
                               self.results.store_setup["fsync"] == "on"
                               and self.results.store_setup["synchronous_commit"] == "on",
                               str(self.results.store_setup))
            for store, nodes in self.STORE_CONFIGURATIONS:
                self.measure_store(cluster, store, nodes)
        finally:
            cluster.stop()

    def store_server_commands(self, cluster, store, nodes, ports):
        """Returns the command lines of the servers of one configuration, on a fresh database."""
        common = ["--allow-http", "--allow-target", "127.0.0.1/32"]
        if store == "sqlite":
            db = self.work_dir / "server-store.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            return [[self.binary("revdesk-server"), "--listen", f"127.0.0.1:{ports[0]}",
                     "--store", f"sqlite:{db}", *common]]
        database = f"revdesk_{nodes}_nodes"
        cluster.recreate_database(database)
        return [[self.binary("revdesk-server"), "--listen", f"127.0.0.1:{port}",
                 "--store", cluster.uri(database), "--node-id", f"node-{i + 1}", "--lease", "60s",
                 *common]
                for i, port in enumerate(ports)]

    def measure_store(self, cluster, store, nodes):
        p = self.p
        label = "SQLite" if store == "sqlite" else f"PostgreSQL, {nodes} node{'s' if nodes > 1 else ''}"
        name = f"server {label}"
        first = find_free_ports(nodes, candidates=range(20100, 20200))
        ports = [first + i for i in range(nodes)]
        commands = self.store_server_commands(cluster, store, nodes, ports)
        env = dict(os.environ, REVDESK_API_KEY=API_KEY)
        servers = []
        try:
            for command, port in zip(commands, ports):
                servers.append(self.start_server(command, port, env))
            # Subscriptions through the first server: the others hear of them from the store.
            for i in range(p.server_subscriptions):
                port = self.nginx.http_port + i % p.server_endpoints
                body = json.dumps({"webhook_url": f"http://127.0.0.1:{port}/hooks/{i}",
                                   "event_type": "call_completed"})
                status, text = api_request(ports[0], "POST", "/api/v1/webhook_subscriptions", body)
                if status != 201:
                    raise RuntimeError(f"{name}: creating a subscription failed with status {status}: {text[:300]}")

            time.sleep(0.2)  # The other servers load the last subscriptions on their notifications.

            pids = [process.pid for process, _ in servers]
            runs = []
            for run in range(p.runs + 1):
                events = p.server_warmup_events if run == 0 else p.server_events
                batch = self.store_batch(cluster if store != "sqlite" else None, pids, ports, events,
                                         f"{name} run {run}")
                if batch is None:
                    break
                if run > 0:
                    runs.append(batch)

            verified = self.verify_store(cluster, store, nodes, runs, name)
        finally:
            for process, log in reversed(servers):
                self.stop_server(process, log)
        if not runs:
            return

        entry = {
            "store": store, "nodes": nodes, "label": label,
            "commands": [self.shown_command(c, cluster) for c in commands],
            "deliveries_per_run": runs[0]["deliveries"],
            "deliveries_per_second": self.summarize(r["deliveries_per_second"] for r in runs),
            "server_cpu_seconds_per_1000": self.summarize(r["server_cpu_seconds_per_1000"] for r in runs),
            "postgres_cpu_seconds_per_1000": (
                self.summarize(r["postgres_cpu_seconds_per_1000"] for r in runs) if store != "sqlite" else None),
            "node_shares": [statistics.median(r["node_shares"][i] for r in runs) for i in range(nodes)],
            "verified": verified,
        }
        self.results.stores.append(entry)
        postgres_cpu = entry["postgres_cpu_seconds_per_1000"]
        print(f"  {name:38} {entry['deliveries_per_second']['median']:>10,.0f} deliveries/s "
              f"{entry['server_cpu_seconds_per_1000']['median'] * 1000:7.1f} ms server CPU/1000"
              + (f" {postgres_cpu['median'] * 1000:7.1f} ms PostgreSQL CPU/1000" if postgres_cpu else ""),
              flush=True)

    def store_batch(self, cluster, pids, ports, events, name):
        """Publishes `events` events spread over the servers and waits until every delivery is
        done. Returns the figures of the batch, or None when it failed."""
        p = self.p
        expected = events * p.server_subscriptions
        before = delivery_counts(ports)
        received_before = self.nginx.requests()
        cpu_before = [process_cpu_seconds(pid) for pid in pids]
        postgres_before = cluster.cpu_seconds() if cluster else 0.0
        started = time.monotonic()
        publish_failures = publish_events(ports, events, self.event_body())

        deadline = started + 60 + expected / 100
        while True:
            counts = delivery_counts(ports)
            delivered = sum(c.get("delivered", 0) - b.get("delivered", 0) for c, b in zip(counts, before))
            if delivered >= expected or time.monotonic() > deadline or publish_failures:
                break
            time.sleep(0.02)
        took = time.monotonic() - started
        cpu_after = [process_cpu_seconds(pid) for pid in pids]
        postgres_after = cluster.cpu_seconds() if cluster else 0.0
        received = self.nginx.requests() - received_before - 1

        other = {k: sum(c.get(k, 0) - b.get(k, 0) for c, b in zip(counts, before))
                 for c in counts for k in c if k != "delivered"}
        self.results.check(f"{name}: every event accepted", not publish_failures,
                           "; ".join(publish_failures[:3]))
        self.results.check(f"{name}: every delivery done", delivered == expected,
                           f"{delivered} of {expected} delivered after {took:.1f} s")
        self.results.check(f"{name}: no retries, failures or cancellations", not any(other.values()),
                           str(other))
        self.results.check(f"{name}: receiver counted every delivery", received == expected,
                           f"servers delivered {delivered}, nginx counted {received} requests")
        if publish_failures or delivered != expected:
            return None

        shares = [(c.get("delivered", 0) - b.get("delivered", 0)) / delivered for c, b in zip(counts, before)]
        return {
            "deliveries": delivered,
            "seconds": took,
            "deliveries_per_second": delivered / took,
            "server_cpu_seconds_per_1000": (sum(cpu_after) - sum(cpu_before)) / delivered * 1000,
            "postgres_cpu_seconds_per_1000": (postgres_after - postgres_before) / delivered * 1000,
            "node_shares": shares,
        }

    @staticmethod
    def event_body():
        return ('{"event_type":"call_completed","payload":' + PAYLOAD.read_text() + "}").encode()

    def verify_store(self, cluster, store, nodes, runs, name):
        """Checks in the database that every delivery of the configuration is delivered."""
        p = self.p
        events = p.server_warmup_events + p.server_events * len(runs)
        query = "SELECT state, count(*) FROM deliveries GROUP BY state ORDER BY state"
        if store == "sqlite":
            try:
                db = sqlite3.connect(f"file:{self.work_dir / 'server-store.db'}?mode=ro", uri=True)
                try:
                    states = dict(db.execute(query).fetchall())
                finally:
                    db.close()
            except sqlite3.Error as e:
                raise RuntimeError(f"{name}: reading the SQLite database failed: {e}") from e
        else:
            text = cluster.sql(query, f"revdesk_{nodes}_nodes")
            states = {line.split("|")[0]: int(line.split("|")[1]) for line in text.splitlines() if line}
        expected = {"delivered": events * p.server_subscriptions}
        ok = states == expected
        self.results.check(f"{name}: the database holds every delivery as delivered", ok,
                           f"states {states}, expected {expected}")
        return ok

    def shown_command(self, command, cluster):
        """Returns a server's command line as the page shows it, with placeholders for the ports
        and the database file."""
        shown = []
        for part in command[1:]:
            part = str(part)
            if part.startswith("sqlite:"):
                part = "sqlite:server-store.db"
            elif part.startswith("postgresql://"):
                part = part.replace(f":{cluster.port}/", ":PORT/")
            elif re.fullmatch(r"127\.0\.0\.1:\d+", part):
                part = "127.0.0.1:API_PORT"
            shown.append(part)
        return "revdesk-server " + " ".join(shown)

    # --- profile ------------------------------------------------------------------------------

    def measure_profile(self):
        """Records a perf profile of signed HTTPS fan-out and keeps the top symbols."""
        if not shutil.which("perf"):
            print("  perf is not installed: no profile", flush=True)
            return
        data = self.work_dir / "perf.data"
        subscriptions, endpoints = 1000, 16
        command = self.fanout_command("revdesk", "https", "memory", subscriptions, endpoints,
                                      self.p.warmup_deliveries, 1)
        command = [str(c) for c in command]
        command[command.index("--target-seconds") + 1] = str(self.p.profile_seconds)
        record = ["perf", "record", "-F", "999", "-o", str(data), "--", *command]
        result = subprocess.run(record, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            print(f"  perf record failed: {result.stderr.strip()[-300:]}", flush=True)
            return
        profile = {"command": "perf record -F 999 -- revdesk-bench-fanout --mode throughput "
                              f"--scheme https --store memory --subscriptions {subscriptions} "
                              f"--endpoints {endpoints}"}
        for sort in ("dso", "symbol"):
            report_command = ["perf", "report", "-i", str(data), "--no-children", "--sort", sort,
                              "--stdio", "-g", "none", "--percent-limit", "0.7"]
            out = subprocess.run(report_command, capture_output=True, text=True, timeout=300).stdout
            rows = []
            for line in out.splitlines():
                match = re.match(r"\s+([\d.]+)%\s+(?:\[[.k]\]\s+)?(.*\S)", line)
                if match and not line.lstrip().startswith("#"):
                    # perf pads the name and may append empty IPC columns ("-  -").
                    name = re.sub(r"(\s+-)+$", "", match.group(2)).strip()
                    rows.append((float(match.group(1)), name))
            profile[sort] = rows[:25]
        self.results.perf = profile
        print("  profile: " + ", ".join(f"{name} {share:.1f}%" for share, name in profile["dso"][:5]), flush=True)


# --- the API of revdesk-server, for the store benchmark ------------------------------------------


def api_request(port, method, path, body=None, connection=None):
    """Sends one request to a server on 127.0.0.1 with the suite's API key, over `connection`
    when given. Returns the status and the body."""
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        if own:
            connection.close()


def delivery_counts(ports):
    """Returns revdesk_delivery_attempts_total of each server, as {outcome: count}."""
    counts = []
    for port in ports:
        status, text = api_request(port, "GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics on port {port} failed with status {status}")
        counts.append({m.group(1): int(m.group(2)) for m in re.finditer(
            r'^revdesk_delivery_attempts_total\{outcome="(\w+)"\} (\d+)$', text, re.MULTILINE)})
    return counts


def publish_events(ports, count, body):
    """Publishes `count` events over PUBLISH_CONNECTIONS keep-alive connections, split evenly
    over the servers. Returns a description of every response other than 202."""
    per_server = max(1, PUBLISH_CONNECTIONS // len(ports))
    lanes = [port for port in ports for _ in range(per_server)]
    shares = [count // len(lanes) + (1 if i < count % len(lanes) else 0) for i in range(len(lanes))]
    failures = []

    def lane(port, events):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(events):
                status, text = api_request(port, "POST", "/api/v1/events", body, connection)
                if status != 202:
                    failures.append(f"port {port}: {status} {text[:200]}")
                    return
        except OSError as e:
            failures.append(f"port {port}: {e}")
        finally:
            connection.close()

    threads = [threading.Thread(target=lane, args=(port, events)) for port, events in zip(lanes, shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def main():
    parser = argparse.ArgumentParser(description="Runs the revdesk benchmark suite.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer configurations and shorter runs (under 2 minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny sizes, each benchmark once, results checked; writes build/benchmarks/smoke.md, "
                           "not docs/ (for CI)")
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "release"),
                        help="the CMake build directory holding the benchmark programs")
    parser.add_argument("--output", help="the page to write (default: docs/benchmarks.md; "
                                         "with --smoke: build/benchmarks/smoke.md)")
    args = parser.parse_args()

    name = "full"
    if args.smoke:
        name = "smoke"
    elif args.quick:
        name = "quick"
    profile = PROFILES[name]
    build_dir = Path(args.build_dir).resolve()
    work_dir = ROOT / "build" / "benchmarks"
    work_dir.mkdir(parents=True, exist_ok=True)
    output = Path(args.output) if args.output else (
        work_dir / "smoke.md" if args.smoke else ROOT / "docs" / "benchmarks.md")

    started = time.monotonic()
    info = machine.describe(ROOT, build_dir)
    print(f"revdesk benchmarks ({profile.name}) on {info['cpu']}, {info['cores']} cores, "
          f"load average {info['load_before']}", flush=True)

    # SIGTERM ends the run through the finally below, so nginx never outlives it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    suite = Suite(profile, build_dir, work_dir)
    suite.nginx = Nginx(work_dir, endpoints=256)
    info["nginx"] = suite.nginx.version()
    suite.nginx.start()
    try:
        sections = [
            ("wrk ceiling", suite.measure_wrk_ceiling),
            ("fan-out throughput", suite.measure_fanout),
            ("publish-to-receipt latency", suite.measure_latency),
            ("API", suite.measure_api),
            ("subscription lookup", suite.measure_index),
            ("resident memory", suite.measure_memory),
            ("HTTP parser against llhttp", suite.measure_parser),
            ("delivery through revdesk-server by store", suite.measure_stores),
        ]
        if profile.profile_seconds:
            sections.append(("profile", suite.measure_profile))
        for title, step in sections:
            print(f"{title}:", flush=True)
            try:
                step()
            except (RuntimeError, subprocess.TimeoutExpired, OSError, urllib.error.URLError) as e:
                suite.results.check(title, False, str(e))
    finally:
        suite.nginx.stop()

    info["load_after"] = machine.load_average()
    info["seconds"] = time.monotonic() - started
    results = suite.results
    (work_dir / f"results-{profile.name}.json").write_text(
        json.dumps({"machine": info, "results": results.__dict__}, indent=2))

    passed = sum(1 for _, ok, _ in results.checks if ok)
    failed = len(results.checks) - passed
    charts_dir = None if args.smoke else ROOT / "docs" / "benchmarks"
    report.write_page(output, charts_dir, info, results, profile)
    print(report.summary_table(results), flush=True)
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
          f"in {info['seconds']:.0f} s", flush=True)
    print(f"benchmarks: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
