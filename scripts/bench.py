#!/usr/bin/env python3
"""The manuel-local half of `make bench`, and the report (Python 3 standard library only).

    bench.py local  --api URL --token-bench TOKEN --token-pages TOKEN --out FILE [options]
        load on /api/user/quota, /api/manuals and /api/query (cache hit and miss) with wrk;
        ingestion of ~1,000 pages of real manuals and question latency over them
    bench.py report --parts DIR --out-dir DIR [--benchmarks FILE]
        merges the parts (routes.json, lambdas.json, local.json, artifacts.json, env.json)
        into latest.json and latest.md, each target with its measured value and pass/miss

scripts/bench.sh runs both; see it for what is built and started first.
"""

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def say(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Api:
    """One keep-alive connection to manuel-local."""

    def __init__(self, url, token):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.token = token
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
                if attempt:
                    raise
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return response.status, parsed


def ask_streaming(api, body):
    """POST /api/query/stream on a new connection: ms from sending to the headers (the first
    byte), to the first `delta` event and to the end; the event names in order."""
    connection = http.client.HTTPConnection(api.host, api.port, timeout=600)
    started = time.monotonic()
    connection.request("POST", "/api/query/stream", body=json.dumps(body).encode(),
                       headers={"Authorization": f"Bearer {api.token}",
                                "Content-Type": "application/json"})
    response = connection.getresponse()
    first_byte = (time.monotonic() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"stream: {response.status} {response.read()[:300]}")
    first_delta, pending, names = None, "", []
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        pending += chunk.decode(errors="replace")
        while "\n\n" in pending:
            block, pending = pending.split("\n\n", 1)
            name = next((line[7:] for line in block.splitlines() if line.startswith("event: ")), None)
            if name:
                names.append(name)
            if name == "delta" and first_delta is None:
                first_delta = (time.monotonic() - started) * 1000
    done = (time.monotonic() - started) * 1000
    connection.close()
    return first_byte, first_delta, done, names


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def summary_ms(values):
    return {
        "samples": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
        "mean_ms": statistics.fmean(values) if values else None,
    }


WRK_SCRIPT = r"""
local counter = 0
local thread_id = 0
local threads = {}
local miss = os.getenv("BENCH_QUERY_MISS") == "1"
local query = os.getenv("BENCH_QUERY") == "1"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
if query then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"question": "How do I replace the ink cartridge?"}'
end
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end
function request()
  if miss then
    counter = counter + 1
    local body = string.format(
      '{"question": "How do I replace the ink cartridge, step %d of run %d?"}',
      counter, thread_id * 1000000 + math.random(1, 999999))
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format()
end
function done(summary, latency, requests)
  local statuses = summary.errors
  io.write(string.format(
    'JSON:{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    statuses.connect, statuses.read, statuses.write, statuses.status, statuses.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk(url, path, token, seconds, threads, connections, query=False, miss=False):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = dict(os.environ, BENCH_TOKEN=token, BENCH_QUERY="1" if query else "0",
               BENCH_QUERY_MISS="1" if miss else "0")
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", script.name, url + path]
    try:
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next((l for l in output.splitlines() if l.startswith("JSON:")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    result = json.loads(line[5:])
    result["requests_per_second"] = result["requests"] / (result["duration_us"] / 1e6)
    result["command"] = " ".join(command[:-3] + ["-s", "<bench.py's Lua script>", path])
    result["latency_ms"] = {k: v / 1000 for k, v in result.pop("latency_us").items()}
    return result


def upload(api, path, name):
    """Uploads a manual and waits until it is ready; returns (seconds, pages)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    started = time.monotonic()
    status, body = api.call("POST", "/api/manuals/upload", {"file_name": name, "file_data": data})
    if status not in (200, 201):
        raise RuntimeError(f"upload of {name}: {status} {body}")
    manual_id = body["manual_id"]
    while True:
        status, body = api.call("GET", f"/api/manuals/{manual_id}")
        if status == 200 and body.get("status") == "ready":
            return time.monotonic() - started, body.get("pages"), manual_id
        if status != 200 or body.get("status") == "failed":
            raise RuntimeError(f"{name} did not become ready: {status} {body}")
        time.sleep(0.25)


def rss_kib(pid):
    """Resident memory of `pid` in KiB, or 0 once it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry))
    return found


class PeakMemory:
    """Samples the server's resident memory and its ingest workers' (each a process of its own)
    every 50 ms while a manual is ingested: the peaks of each."""

    def __init__(self, server_pid):
        import threading
        self.server_pid, self.server_kib, self.worker_kib = server_pid, 0, 0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while self.running:
            self.server_kib = max(self.server_kib, rss_kib(self.server_pid))
            for child in children(self.server_pid):
                self.worker_kib = max(self.worker_kib, rss_kib(child))
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join()
        return {"server_peak_rss_mib": self.server_kib / 1024, "worker_peak_rss_mib": self.worker_kib / 1024}


def bomb_pdf(out, inflated=256 * 1024 * 1024):
    """The decompression bomb of issue 21: one page whose content stream inflates to `inflated`
    bytes of text-drawing operators (~250 KB on disk)."""
    import zlib
    block = b"BT /F1 12 Tf 72 720 Td (Press the red button to start) Tj ET\n" * 16384
    deflater = zlib.compressobj(9)
    stream = b"".join(deflater.compress(block) for _ in range(inflated // len(block) + 1)) + deflater.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    pdf, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    Path(out).write_bytes(bytes(pdf))
    return Path(out)


def ingest_until_done(api, path, name):
    """Uploads and waits until the manual leaves `processing`: (seconds, detail)."""
    data = Path(path).read_bytes()
    started = time.monotonic()
    status, body = api.call("POST", "/api/manuals/upload", {
        "file_name": name, "file_data": base64.b64encode(data).decode(), "content_type": "application/pdf"})
    if status != 201:
        raise RuntimeError(f"upload {name}: {status} {body}")
    while True:
        status, body = api.call("GET", f"/api/manuals/{body.get('manual_id') or body.get('id')}")
        if status != 200 or body.get("status") != "processing":
            return time.monotonic() - started, body
        time.sleep(0.25)


def concatenated(manuals_dir, order, out):
    names = {"g": "gutenprint-users-manual.pdf", "a": "avrdude.pdf"}
    subprocess.run(["pdfunite", *[str(Path(manuals_dir) / names[c]) for c in order], str(out)],
                   check=True, capture_output=True)
    return out


def local(args):
    results = {"api": args.api, "load": [], "ingestion": None, "queries_1000_pages": None}
    bench = Api(args.api, args.token_bench)

    # A small corpus for the load test: the 6-page printer manual.
    seconds, pages, _ = upload(bench, ROOT / "crates/local/tests/fixtures/printer-manual.pdf",
                               "printer-manual.pdf")
    say(f"load corpus ready: printer-manual.pdf, {pages} pages, {seconds:.1f} s")
    status, answer = bench.call("POST", "/api/query", {"question": "How do I replace the ink cartridge?"})
    if status != 200:
        raise RuntimeError(f"query: {status} {answer}")
    runs = [
        ("GET /api/user/quota", "/api/user/quota", False, False, args.load_seconds),
        ("GET /api/manuals", "/api/manuals", False, False, args.load_seconds),
        ("POST /api/query (cache hit)", "/api/query", True, False, args.load_seconds),
        ("POST /api/query (cache miss)", "/api/query", True, True, args.load_seconds),
    ]
    for name, path, query, miss, seconds in runs:
        result = wrk(args.api, path, args.token_bench, seconds, args.threads, args.connections,
                     query=query, miss=miss)
        result["route"] = name
        errors = sum(result["errors"].values())
        say(f"load {name}: {result['requests_per_second']:.0f} req/s, p50 "
            f"{result['latency_ms']['p50']:.2f} ms, p99 {result['latency_ms']['p99']:.2f} ms, "
            f"{errors} errors")
        results["load"].append(result)

    if args.skip_ingest:
        return results
    pages_api = Api(args.api, args.token_pages)
    with tempfile.TemporaryDirectory() as tmp:
        # Three different concatenations of the two Debian manuals (73 and 61 pages): 329 + 341
        # + 329 = 999 pages, different bytes, so none is taken for a duplicate.
        orders = os.environ.get("BENCH_ORDERS", "gagaa,agagg,ggaaa").split(",")
        ingestion = []
        for n, order in enumerate(orders[: args.copies]):
            pdf = concatenated(args.manuals_dir, order, Path(tmp) / f"manuals-{order}.pdf")
            memory = PeakMemory(args.server_pid) if args.server_pid else None
            seconds, pages, manual_id = upload(pages_api, pdf, f"manuals-{order}.pdf")
            peaks = memory.stop() if memory else {}
            say(f"ingested manuals-{order}.pdf: {pages} pages, {pdf.stat().st_size} bytes, {seconds:.1f} s"
                + (f", peak RSS server {peaks['server_peak_rss_mib']:.0f} MiB, worker "
                   f"{peaks['worker_peak_rss_mib']:.0f} MiB" if peaks else ""))
            ingestion.append({"file": pdf.name, "pages": pages, "bytes": pdf.stat().st_size,
                              "seconds": seconds, "indexed_before": sum(i["pages"] for i in ingestion),
                              **peaks})
        results["ingestion"] = ingestion
        # The decompression bomb: it must end `failed`, with the server's memory flat.
        bomb = bomb_pdf(Path(tmp) / "bomb.pdf")
        memory = PeakMemory(args.server_pid) if args.server_pid else None
        seconds, detail = ingest_until_done(pages_api, bomb, "bomb.pdf")
        peaks = memory.stop() if memory else {}
        results["bomb"] = {"bytes": bomb.stat().st_size, "seconds": seconds,
                           "status": detail.get("status"), "reason": detail.get("status_reason"), **peaks}
        say(f"bomb ({bomb.stat().st_size} bytes): {detail.get('status')} after {seconds:.1f} s: "
            f"{detail.get('status_reason')}; {peaks}")

    questions = [q["question"] for q in json.loads((ROOT / "eval/questions.json").read_text())["questions"]
                 if q.get("manual") in (None, "gutenprint-users-manual.pdf", "avrdude.pdf")]
    questions = questions[: args.questions]
    # One question first, untimed: the first question after ingestion loads the user's index.
    pages_api.call("POST", "/api/query", {"question": "How do I get started?"})
    timings = {"miss": [], "hit": []}
    server = {"miss": [], "hit": []}
    found = 0
    for kind in ("miss", "hit"):
        for question in questions:
            started = time.monotonic()
            status, body = pages_api.call("POST", "/api/query", {"question": question})
            elapsed = (time.monotonic() - started) * 1000
            if status != 200:
                raise RuntimeError(f"query: {status} {body}")
            timings[kind].append(elapsed)
            server[kind].append(body.get("response_time_ms"))
            if kind == "miss" and body.get("context_found"):
                found += 1
    results["queries_1000_pages"] = {
        "indexed_pages": sum(i["pages"] for i in results["ingestion"]),
        "questions": len(questions),
        "answered_from_the_manuals": found,
        "miss": summary_ms(timings["miss"]),
        "hit": summary_ms(timings["hit"]),
        "server_response_time_ms": {k: summary_ms([v for v in server[k] if v is not None]) for k in server},
    }
    q = results["queries_1000_pages"]
    say(f"queries over {q['indexed_pages']} pages: miss p50 {q['miss']['p50_ms']:.1f} ms, "
        f"hit p50 {q['hit']['p50_ms']:.2f} ms")

    # The same questions streamed, each new to the cache (a suffix changes the cache key).
    first_bytes, first_deltas, dones = [], [], []
    for question in questions:
        first_byte, first_delta, done, names = ask_streaming(
            pages_api, {"question": f"{question} (streamed)"})
        if names[-1:] != ["done"] or "delta" not in names:
            raise RuntimeError(f"stream of {question!r}: events {names}")
        first_bytes.append(first_byte)
        first_deltas.append(first_delta)
        dones.append(done)
    results["stream_1000_pages"] = {
        "questions": len(questions),
        "first_byte": summary_ms(first_bytes),
        "first_delta": summary_ms(first_deltas),
        "done": summary_ms(dones),
    }
    st = results["stream_1000_pages"]
    say(f"streamed over {q['indexed_pages']} pages: first byte p50 {st['first_byte']['p50_ms']:.1f} ms, "
        f"first delta p50 {st['first_delta']['p50_ms']:.1f} ms")
    return results


# ---------------------------------------------------------------------------------------------
# The report


def verdict(value, limit):
    if value is None:
        return "not measured"
    return "pass" if value <= limit else "miss"


def fmt(value, unit="", digits=1):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def load_part(parts, name):
    path = Path(parts) / name
    return json.loads(path.read_text()) if path.is_file() else None


def report(args):
    parts = args.parts
    env = load_part(parts, "env.json") or {}
    routes = load_part(parts, "routes.json")
    lambdas = load_part(parts, "lambdas.json")
    artifacts = load_part(parts, "artifacts.json")
    local_part = load_part(parts, "local.json")
    fixes = load_part(ROOT / "bench", "fixes.json") or []

    targets = []

    def target(name, measured, limit, unit, digits=1, note=""):
        targets.append({"target": name, "limit": limit, "unit": unit, "measured": measured,
                        "result": verdict(measured, limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) else limit,
                        "note": note, "digits": digits})

    if lambdas:
        for f in lambdas["functions"]:
            target(f"{f['function']}: init (spawn → first event request) p50 ≤ 15 ms",
                   f["init"]["p50_us"] / 1000, 15, " ms")
        for f in lambdas["functions"]:
            target(f"{f['function']}: spawn → first response p50 ≤ 15 ms", f["cold"]["p50_us"] / 1000,
                   15, " ms", 1, f"the same event warm: {f['warm']['p50_us'] / 1000:.1f} ms")
        for f in lambdas["functions"]:
            target(f"{f['function']}: peak RSS ≤ 32 MB", f["peak_rss_after_warm_kib"] / 1024, 32, " MiB")
        large = lambdas.get("process_manual_largest_manual")
        if large:
            # 80 % of the function's 512 MB (LambdaMemorySize) leaves room for what this loopback
            # run does not show (the SDK's TLS buffers, a slower download's larger reads).
            target(f"manuel-process-manual: peak RSS processing a {large['manual_bytes'] / 1e6:.1f} MB manual ≤ 410 MiB "
                   "(80 % of LambdaMemorySize 512)", large["peak_rss_kib"] / 1024, 410, " MiB", 0,
                   f"{large['status']} in {large['seconds']:.1f} s")
            if large["status"] != "ready":
                targets[-1]["result"] = "miss"
    if artifacts:
        for a in artifacts["functions"]:
            mib = a["zip_bytes"] / (1024 * 1024) if a.get("zip_bytes") is not None else None
            target(f"{a['function']}: zipped arm64 artifact ≤ 8 MB", mib, 8, " MiB", 2,
                   a.get("note", ""))
    if routes:
        for r in routes["routes"]:
            target(f"{r['route']}: warm in-process p99 ≤ 1 ms", r["p99_us"] / 1000, 1, " ms", 3)
    if local_part:
        quota = next((l for l in local_part["load"] if l["route"] == "GET /api/user/quota"), None)
        target("manuel-local GET /api/user/quota ≥ 5,000 req/s (token verified)",
               quota["requests_per_second"] if quota else None, ">= 5000", " req/s", 0)
        if quota:
            targets[-1]["result"] = "pass" if quota["requests_per_second"] >= 5000 else "miss"
        q = local_part.get("queries_1000_pages")
        target("query over ~1,000 pages p50 ≤ 30 ms on a cache miss",
               q["miss"]["p50_ms"] if q else None, 30, " ms")
        target("query over ~1,000 pages p50 ≤ 2 ms on a cache hit",
               q["hit"]["p50_ms"] if q else None, 2, " ms", 2)
        st = local_part.get("stream_1000_pages")
        target("streamed query over ~1,000 pages: first byte p50 ≤ 50 ms on a cache miss",
               st["first_byte"]["p50_ms"] if st else None, 50, " ms", 1,
               f"first delta p50 {st['first_delta']['p50_ms']:.1f} ms" if st else "")
        first = (local_part.get("ingestion") or [{}])[0]
        target("ingesting the 329-page PDF: server peak RSS ≤ 600 MiB",
               first.get("server_peak_rss_mib"), 600, " MiB", 0)
        target("ingesting the 329-page PDF: ingest worker peak RSS ≤ 1,536 MiB (its limit)",
               first.get("worker_peak_rss_mib"), 1536, " MiB", 0)
        bomb = local_part.get("bomb") or {}
        target("decompression bomb: server peak RSS ≤ 600 MiB",
               bomb.get("server_peak_rss_mib"), 600, " MiB", 0,
               f"{bomb.get('status')}: {bomb.get('reason')}" if bomb else "")
        target("decompression bomb: `failed` within 60 s", bomb.get("seconds"), 60, " s", 1)

    stream = load_part(parts, "stream.json")
    if stream:
        target("streamed answer through the streaming query function: first delta p50 ≤ 1.5 s "
               "(Retrieve 0.6 s, first token 0.8 s)", stream["first_delta"]["p50_us"] / 1e6, 1.5,
               " s", 2, f"max {stream['first_delta']['max_us'] / 1e6:.2f} s; first byte p50 "
               f"{stream['first_byte']['p50_us'] / 1e6:.2f} s")
        long = stream["long_answer"]
        target(f"a {long['tokens']:,}-token answer streams past 29 s and ends with `done`",
               long["seconds"] if long["last_event"] == "done" and long["ending"] == "Finished" else None,
               ">= 29", " s", 1, f"last event `{long['last_event']}`, {long['deltas']} deltas, "
               f"stream {long['ending']}")
        targets[-1]["result"] = ("pass" if long["last_event"] == "done" and long["seconds"] >= 29
                                 else "miss")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"environment": env, "targets": targets, "lambdas": lambdas, "artifacts": artifacts,
                "routes": routes, "local": local_part, "stream": stream, "fixes": fixes}
    (out_dir / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = render(document)
    (out_dir / "latest.md").write_text(markdown)
    if args.benchmarks:
        Path(args.benchmarks).write_text(markdown)
    passed = sum(1 for t in targets if t["result"] == "pass")
    missed = [t["target"] for t in targets if t["result"] == "miss"]
    say(f"{passed} of {len(targets)} targets met; missed: {', '.join(missed) or 'none'}")
    say(f"report: {out_dir / 'latest.md'} and latest.json")


def resolve(doc, path):
    """A value of this run's report by path: keys separated by '.', a list element chosen by
    `key=value` (e.g. `local.load.route=GET /api/user/quota.requests_per_second`)."""
    value = doc
    for step in [p for p in path.split(".") if p]:
        if isinstance(value, list) and "=" in step:
            key, wanted = step.split("=", 1)
            value = next((item for item in value if str(item.get(key)) == wanted), None)
        elif isinstance(value, dict):
            value = value.get(step)
        else:
            return None
        if value is None:
            return None
    return value if isinstance(value, (int, float)) else None


ALL_PARTS = ("lambdas", "artifacts", "routes", "local", "stream")


def render(doc):
    env = doc["environment"]
    lines = ["# Benchmarks", "",
             "Written by `make bench` (scripts/bench.sh); the same numbers are in "
             "`bench/report/latest.json`. Never edited by hand.", "",
             f"- Measured: {env.get('date', '?')}, commit `{env.get('commit', '?')}`"
             f"{' (with uncommitted changes)' if env.get('dirty') else ''}",
             f"- Machine: {env.get('cpus', '?')} CPUs ({env.get('cpu_model', '?')}), "
             f"{env.get('memory', '?')}, {env.get('os', '?')}; load average before the run "
             f"{env.get('load_before', '?')}, after {env.get('load_after', '?')}",
             *([f"- Note: {env['note']}"] if env.get("note") else []),
             *([f"- Note: this run measured only {', '.join(env['parts'])} (BENCH_ONLY); the "
                "other sections are from an earlier run, at the commit of that run (see this "
                "file's history)"]
               if env.get("parts") and set(env["parts"]) != set(ALL_PARTS) else []),
             f"- Toolchain: {env.get('rustc', '?')}; profile `release` (LTO fat, 1 codegen unit, "
             "panic=abort, strip) — the shipped configuration, x86_64 here (the functions ship "
             "for arm64)",
             "", "## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for t in doc["targets"]:
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['target']} | {fmt(t['measured'], t['unit'], t['digits'])}{note} | {t['result']} |")

    lambdas = doc.get("lambdas")
    lines += ["", "## 1–2. Lambda binaries: cold start proxy and peak RSS", ""]
    if lambdas:
        lines += ["Each release binary is started against a local Lambda Runtime API on loopback "
                  "(crates/lambda-harness) with the environment of a moto test stack, and answers "
                  "one event: cold = spawn → first response, a new process each time. Then one "
                  "process answers the same event again and again: warm = one invocation through "
                  "the same Runtime API; peak RSS = `VmHWM` of that process after the first answer "
                  "and after all of them. Init = spawn → the function's first request for an event "
                  "(what Lambda reports as `Init Duration`). The remote calls go to moto (Python, "
                  "loopback): a few ms each, slower than DynamoDB from inside AWS but with no TLS "
                  "handshake, so the first response here says little about AWS beyond init. The "
                  "stack runs with `VERIFY_JWT=false` (the API Gateway authorizer's claims, as in the "
                  "Lambda tests); init includes fetching the JWKS from a loopback server. With "
                  "`VERIFY_JWT=true` (the template's default) each request also verifies the token "
                  "(one RS256 verification, part 4) and init fetches the JWKS from Cognito.", "",
                  "| function | event | answer | init p50 | init p90 | first response p50 | first response p90 | warm p50 | peak RSS after 1st | peak RSS after warm loop | binary |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in lambdas["functions"]:
            lines.append(
                f"| {f['function']} | {f['event']} | {f['answer']} | {fmt(f['init']['p50_us'] / 1000, ' ms')} | "
                f"{fmt(f['init']['p90_us'] / 1000, ' ms')} | {fmt(f['cold']['p50_us'] / 1000, ' ms')} | "
                f"{fmt(f['cold']['p90_us'] / 1000, ' ms')} | {fmt(f['warm']['p50_us'] / 1000, ' ms', 2)} | "
                f"{fmt(f['peak_rss_after_first_kib'] / 1024, ' MiB')} | {fmt(f['peak_rss_after_warm_kib'] / 1024, ' MiB')} "
                f"({f['warm_invocations']} invocations) | {fmt(f['binary_bytes'] / 1048576, ' MiB')} |")
        starts = lambdas["functions"][0]["cold"]["samples"] if lambdas["functions"] else 0
        lines += ["", f"{starts} cold starts per function."]
        large = lambdas.get("process_manual_largest_manual")
        if large:
            lines += ["", f"The largest manual process-manual accepts: a {large['manual_bytes'] / 1e6:.1f} MB, "
                      f"{large['pages']}-page illustrated PDF (incompressible images) announced through the "
                      "upload link, stored in moto's S3 and processed from its S3 event under the function's "
                      f"role: {large['status']} in {large['seconds']:.1f} s, peak RSS "
                      f"{large['peak_rss_kib'] / 1024:.0f} MiB (the function has 512 MB)."]
    else:
        lines.append("Not measured in this run.")

    lines += ["", "## 3. Zipped arm64 artifacts", ""]
    artifacts = doc.get("artifacts")
    if artifacts:
        lines.append(artifacts.get("summary", ""))
        lines += ["", "| function | bootstrap.zip | bootstrap | built |", "|---|---|---|---|"]
        for a in artifacts["functions"]:
            zip_size = fmt(a["zip_bytes"] / 1048576, " MiB", 2) if a.get("zip_bytes") is not None else "not built: run `make build`"
            raw = fmt(a["bootstrap_bytes"] / 1048576, " MiB", 2) if a.get("bootstrap_bytes") is not None else "–"
            lines.append(f"| {a['function']} | {zip_size} | {raw} | {a.get('built', '–')} |")

    routes = doc.get("routes")
    lines += ["", "## 4. Warm in-process cost per HTTP route", ""]
    if routes:
        tv = routes["token_verification"]
        lines += ["Each function's router as it is served (`serve_app`: fallbacks, security layers, "
                  "request ids, telemetry) called in-process with `tower::ServiceExt::oneshot`, "
                  "every remote service replaced by an in-memory fake that answers at once "
                  "(crates/bench/src/fakes.rs), a real RS256 ID token verified on every `/api/*` "
                  "request. Timed: the router's answer and reading its body.", "",
                  f"One RS256 verification alone: p50 {fmt(tv['p50_us'], ' µs')}, p99 {fmt(tv['p99_us'], ' µs')}.", "",
                  "| function | route | status | p50 | p99 | mean | iterations | notes |", "|---|---|---|---|---|---|---|---|"]
        for r in routes["routes"]:
            lines.append(f"| {r['function']} | `{r['route']}` | {r['status']} | {fmt(r['p50_us'], ' µs')} | "
                         f"{fmt(r['p99_us'], ' µs')} | {fmt(r['mean_us'], ' µs')} | {r['iterations']} | {r['note']} |")
    else:
        lines.append("Not measured in this run.")

    local_part = doc.get("local")
    lines += ["", "## 5. manuel-local under load", ""]
    if local_part:
        lines += ["The release build of manuel-local with an empty data directory, rate limits off "
                  "and quotas out of reach; `wrk` in a separate process on the same machine (so both "
                  "share the 2 CPUs). Every request carries a bearer token that the server verifies "
                  "(RS256). The user has one 6-page manual.", "",
                  "| route | req/s | p50 | p90 | p99 | max | errors | command |", "|---|---|---|---|---|---|---|---|"]
        for l in local_part["load"]:
            lat = l["latency_ms"]
            lines.append(f"| `{l['route']}` | {fmt(l['requests_per_second'], '', 0)} | {fmt(lat['p50'], ' ms', 2)} | "
                         f"{fmt(lat['p90'], ' ms', 2)} | {fmt(lat['p99'], ' ms', 2)} | {fmt(lat['max'], ' ms', 1)} | "
                         f"{sum(l['errors'].values())} | `{l['command']}` |")
        lines += ["", "## 6. Local ingestion and questions over ~1,000 pages", ""]
        ingestion = local_part.get("ingestion")
        if ingestion:
            lines += ["Concatenations of Debian's Gutenprint (73 pages) and AVRDUDE (61 pages) manuals "
                      "(`pdfunite`), uploaded one after another as one user; time = upload request → "
                      "status `ready` (polled every 0.25 s).", "",
                      "| file | pages | size | pages already indexed | upload → ready |", "|---|---|---|---|---|"]
            for i in ingestion:
                lines.append(f"| {i['file']} | {i['pages']} | {fmt(i['bytes'] / 1048576, ' MiB', 2)} | "
                             f"{i['indexed_before']} | {fmt(i['seconds'], ' s')} |")
            q = local_part.get("queries_1000_pages")
            if q:
                lines += ["", f"{q['questions']} questions of eval/questions.json about these manuals, "
                          f"asked one at a time over {q['indexed_pages']} indexed pages (first a new "
                          "question each: cache miss; then the same ones again: cache hit), measured "
                          "by the client over a keep-alive connection; "
                          f"{q['answered_from_the_manuals']} answered from the manuals.", "",
                          "| | p50 | p90 | p99 | mean | server's `response_time_ms` p50 |", "|---|---|---|---|---|---|"]
                for kind in ("miss", "hit"):
                    s = q[kind]
                    lines.append(f"| cache {kind} | {fmt(s['p50_ms'], ' ms', 2)} | {fmt(s['p90_ms'], ' ms', 2)} | "
                                 f"{fmt(s['p99_ms'], ' ms', 2)} | {fmt(s['mean_ms'], ' ms', 2)} | "
                                 f"{fmt(q['server_response_time_ms'][kind]['p50_ms'], ' ms', 2)} |")
            st = local_part.get("stream_1000_pages")
            if st:
                lines += ["", f"The same {st['questions']} questions on `POST /api/query/stream`, each new "
                          "to the cache, a new connection each: first byte = the response's status "
                          "and headers (sent once retrieval is done), first delta = the answer's first "
                          "sentence, done = the end of the stream.", "",
                          "| | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
                for kind in ("first_byte", "first_delta", "done"):
                    s = st[kind]
                    lines.append(f"| {kind.replace('_', ' ')} | {fmt(s['p50_ms'], ' ms', 2)} | "
                                 f"{fmt(s['p90_ms'], ' ms', 2)} | {fmt(s['p99_ms'], ' ms', 2)} | "
                                 f"{fmt(s.get('max_ms'), ' ms', 2)} |")
        else:
            lines.append("Not measured in this run (BENCH_SKIP_INGEST=1).")
    else:
        lines.append("Not measured in this run.")

    stream = doc.get("stream")
    lines += ["", "## 7. Streamed answers through the streaming query function", ""]
    if stream:
        long = stream["long_answer"]
        lines += ["The release `manuel-query` binary with `RESPONSE_TRANSFER_MODE=STREAM` behind a "
                  "local Runtime API that speaks Lambda's streaming response protocol (prelude, "
                  "NUL delimiter, body; cut off at the function's timeout, "
                  f"{stream['function_timeout_s']} s as template.yaml deploys it), a moto stack, "
                  f"and the Bedrock fake at Bedrock's pace ({stream['pace']}). Times from the "
                  "invoke: first byte = the prelude (what API Gateway passes on first), first delta "
                  f"= the first word. {stream['questions']} distinct questions (cache misses).", "",
                  "| | p50 | p90 | max |", "|---|---|---|---|"]
        for kind in ("first_byte", "first_delta", "done"):
            s = stream[kind]
            lines.append(f"| {kind.replace('_', ' ')} | {fmt(s['p50_us'] / 1e3, ' ms', 0)} | "
                         f"{fmt(s['p90_us'] / 1e3, ' ms', 0)} | {fmt(s['max_us'] / 1e3, ' ms', 0)} |")
        lines += ["", f"A {long['tokens']:,}-token answer: {long['deltas']} deltas over "
                  f"{fmt(long['seconds'], ' s')}, last event `{long['last_event']}` "
                  f"(output tokens billed: {long['output_tokens']}), stream {long['ending']}."]
    else:
        lines.append("Not measured in this run.")

    if doc.get("fixes"):
        lines += ["", "## Fixes made for the targets (before → after)", "",
                  "Before: measured by `make bench` on the commit before the change (bench/fixes.json); "
                  "after: this run.", "",
                  "| change | commit | measure | before | after |", "|---|---|---|---|---|"]
        for fix in doc["fixes"]:
            after = resolve(doc, fix.get("after_from", ""))
            lines.append(f"| {fix['change']} | {fix['commit']} | {fix['measure']} | {fix['before']} | "
                         f"{fmt(after, fix.get('unit', ''), fix.get('digits', 1))} |")
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("local")
    p.add_argument("--api", required=True)
    p.add_argument("--token-bench", required=True)
    p.add_argument("--token-pages", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--load-seconds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--manuals-dir", default=str(ROOT / ".tools/eval-manuals"))
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--questions", type=int, default=40)
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--server-pid", type=int, help="manuel-local's pid, for its peak memory")
    r = sub.add_parser("report")
    r.add_argument("--parts", required=True)
    r.add_argument("--out-dir", required=True)
    r.add_argument("--benchmarks")
    args = parser.parse_args()
    if args.command == "local":
        results = local(args)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    else:
        report(args)


if __name__ == "__main__":
    main()
