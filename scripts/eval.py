#!/usr/bin/env python3
"""Answer-quality evaluation of a Manuel API: retrieval ranks and refusals on labelled questions.

Usage:
    python3 scripts/eval.py --api URL --token TOKEN [--questions eval/questions.json]
        [--manuals DIR] [--report-dir eval/report] [--skip-upload] [--all-manuals] [--check]

Works against manuel-local and a deployed stack alike: it only uses the public API
(POST /api/manuals/upload, GET /api/manuals[/{id}], POST /api/query) with a bearer token (for a
deployed stack, the Cognito ID token of a test user). The API and the token can also come from
the MANUEL_API and MANUEL_TOKEN environment variables. Python 3.8+ standard library only.

What it does:
 1. Uploads every manual the questions name, from --manuals (default .tools/eval-manuals, filled
    by scripts/eval-manuals.sh), under its file name. The same bytes uploaded again answer
    200 with "duplicate": true and the existing manual id, which is fine. With --skip-upload
    nothing is uploaded: the manuals are looked up by name in GET /api/manuals.
 2. Waits until each manual is `ready` (polling GET /api/manuals/{id}); a `failed` manual, or
    one still processing after --ready-timeout seconds, stops the run with an error.
 3. Asks every question with POST /api/query {"question": ...}. Unless --all-manuals is given,
    the request also carries "manual_ids" (the evaluated manuals), so other manuals of the same
    account (a deployed stack's test user may have some) neither answer nor crowd out the
    expected pages. A 429 (rate limit or quota) or 503 is retried after its Retry-After; a
    quota that would need waiting longer than --max-wait seconds stops the run (raise the quota:
    manuel-local reads DAILY_QUOTA_LIMIT and MONTHLY_QUOTA_LIMIT, 50 and 1000 by default).
 4. Scores and reports (a table on stdout, report.json and report.md in --report-dir).

Scoring:
 - A source matches a question when it is one of the expected manual (its `manual_id` is the id
   the expected file was uploaded as, or its `manual_name` is the expected file name) and its
   `page_number` is one of the expected pages (1-based: physical PDF pages as pdfium and
   `pdftotext -f N -l N` count them; for Markdown and text manuals the server's sections).
 - rank = 1-based position of the first matching source in `sources`, in the order returned;
   none when no source matches (also when the answer is a refusal without sources).
 - Over the answerable questions (those with a manual): hit@1 = share with rank 1, hit@3 =
   share with rank <= 3, MRR = mean of 1/rank (0 without a match).
 - Refusals: a question is handled correctly when `context_found` is false for an
   unanswerable question (manual null) and true for an answerable one. "refusal accuracy" is
   the share of ALL questions handled correctly. Reported beside it: the refusal rate on the
   unanswerable questions (share with context_found false) and the false-refusal rate on the
   answerable ones (share with context_found false).
 - A question whose request failed (after retries) counts as a miss and as wrongly handled.

Exit status: 0 whatever the numbers, unless --check is given; then 1 when hit@3 < 0.9,
hit@1 < 0.75 or refusal accuracy < 0.8 (the targets of issue 10). 2 for a run that could not be
done (bad arguments, a manual that failed, the API unreachable).
"""

import argparse
import base64
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime, timezone

TARGETS = {"hit@3": 0.9, "hit@1": 0.75, "refusal_accuracy": 0.8}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Fatal(Exception):
    """A condition that stops the run (exit status 2)."""


def log(message):
    print(f"eval: {message}", file=sys.stderr, flush=True)


class Api:
    def __init__(self, base_url, token, timeout, max_wait):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_wait = max_wait
        self.requests = 0

    def call(self, method, path, body=None, retries=4):
        """Returns (status, parsed JSON body). Retries 429/503 after Retry-After, and
        connection errors and other 5xx a few times; any other status is returned."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Authorization", "Bearer " + self.token)
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.status, parse_json(response.read())
            except urllib.error.HTTPError as error:
                status = error.code
                payload = parse_json(error.read())
                retry_after = error.headers.get("Retry-After")
                if status in (429, 503) and attempt <= retries + 20:
                    wait = retry_seconds(retry_after, default=2.0 * attempt)
                    if wait > self.max_wait:
                        code = payload.get("code") if isinstance(payload, dict) else None
                        raise Fatal(
                            f"{method} {path}: {status} {code or ''} asks to wait {wait:.0f} s "
                            f"(more than --max-wait {self.max_wait:.0f} s). If the daily or "
                            "monthly question quota is used up, raise it (manuel-local: "
                            "DAILY_QUOTA_LIMIT / MONTHLY_QUOTA_LIMIT)."
                        )
                    log(f"{method} {path}: {status}, retrying in {wait:.1f} s")
                    time.sleep(wait)
                    continue
                if status >= 500 and attempt <= retries:
                    time.sleep(1.0 * attempt)
                    continue
                return status, payload
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
                if attempt <= retries:
                    time.sleep(1.0 * attempt)
                    continue
                raise Fatal(f"{method} {url}: {error}") from error


def parse_json(raw):
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {"raw": raw[:500].decode("utf-8", "replace")}


def retry_seconds(value, default):
    try:
        return max(0.5, float(value))
    except (TypeError, ValueError):
        return default


def error_text(status, payload):
    if isinstance(payload, dict):
        return f"{status} {payload.get('code', '')}: {payload.get('error', payload)}"
    return f"{status}: {payload}"


def load_questions(path):
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    questions = data["questions"] if isinstance(data, dict) else data
    if isinstance(data, dict) and "manual" in data:
        # E-Manual QA's shape: one manual for every question, `q` for the question.
        questions = [
            {"id": f"emqa{number:02d}", "question": question["q"], "manual": data["manual"],
             "pages": question["pages"], "kind": question.get("section_path")}
            for number, question in enumerate(questions, start=1)
        ]
    seen = set()
    for question in questions:
        for field in ("id", "question", "manual", "pages"):
            if field not in question:
                raise Fatal(f"{path}: question {question.get('id', '?')} has no '{field}'")
        if question["id"] in seen:
            raise Fatal(f"{path}: duplicate question id {question['id']}")
        seen.add(question["id"])
        if question["manual"] is None and question["pages"]:
            raise Fatal(f"{path}: {question['id']} has no manual but pages")
        if question["manual"] is not None and not question["pages"]:
            raise Fatal(f"{path}: {question['id']} names a manual but no pages")
    return questions


def upload_manuals(api, names, manuals_dir):
    ids = {}
    for name in names:
        path = os.path.join(manuals_dir, name)
        if not os.path.isfile(path):
            raise Fatal(f"no manual {path} (run scripts/eval-manuals.sh, or pass --manuals)")
        with open(path, "rb") as handle:
            encoded = base64.b64encode(handle.read()).decode("ascii")
        status, body = api.call(
            "POST", "/api/manuals/upload", {"file_name": name, "file_data": encoded}
        )
        if status not in (200, 201) or "manual_id" not in body:
            raise Fatal(f"uploading {name}: {error_text(status, body)}")
        ids[name] = body["manual_id"]
        stored = body.get("file_name")
        note = " (already uploaded)" if body.get("duplicate") else ""
        if stored and stored != name:
            note += f" (stored as {stored!r})"
        log(f"uploaded {name}: {body['manual_id']}{note}")
    return ids


def find_manuals(api, names):
    """--skip-upload: the ready (or processing) manuals of the account, by name."""
    found = {}
    token = None
    while True:
        query = "?limit=100" + ("&next_token=" + urllib.parse.quote(token) if token else "")
        status, body = api.call("GET", "/api/manuals" + query)
        if status != 200:
            raise Fatal(f"listing manuals: {error_text(status, body)}")
        for item in body.get("manuals", []):
            if item.get("name") in names and item.get("status") != "failed":
                found.setdefault(item["name"], item["id"])
        token = body.get("next_token")
        if not token:
            break
    missing = [name for name in names if name not in found]
    if missing:
        raise Fatal(f"--skip-upload: the account has no manual named {', '.join(missing)}")
    return found


def wait_ready(api, ids, timeout):
    deadline = time.monotonic() + timeout
    pages = {}
    pending = dict(ids)
    while pending:
        for name, manual_id in list(pending.items()):
            status, body = api.call("GET", "/api/manuals/" + manual_id)
            if status != 200:
                raise Fatal(f"manual {name} ({manual_id}): {error_text(status, body)}")
            state = body.get("status")
            if state == "ready":
                pages[name] = body.get("pages")
                log(f"{name} is ready ({body.get('pages')} pages)")
                del pending[name]
            elif state == "failed":
                raise Fatal(
                    f"manual {name} ({manual_id}) failed: {body.get('status_reason', 'no reason given')}"
                )
        if pending:
            if time.monotonic() > deadline:
                raise Fatal(
                    f"still not ready after {timeout:.0f} s: {', '.join(sorted(pending))}"
                )
            time.sleep(1.0)
    return pages


def check_quota(api, needed):
    """Warns when the account's remaining question quota is smaller than the run needs (answers
    served from the cache are free, so this is a warning, not an error)."""
    status, body = api.call("GET", "/api/user/quota")
    if status != 200 or not isinstance(body.get("quotas"), dict):
        return
    for window in ("daily", "monthly"):
        quota = body["quotas"].get(window) or {}
        remaining = quota.get("remaining")
        if isinstance(remaining, (int, float)) and remaining < needed:
            log(
                f"warning: {needed} questions to ask but only {remaining:g} left in the {window} "
                f"quota (limit {quota.get('limit')}); expect 429 quota_exceeded. Raise "
                "DAILY_QUOTA_LIMIT / MONTHLY_QUOTA_LIMIT (stack parameters DailyQuotaLimit / "
                "MonthlyQuotaLimit) for the evaluation."
            )


def rank_of(sources, expected_id, expected_name, pages):
    for position, source in enumerate(sources, start=1):
        same_manual = source.get("manual_id") == expected_id or source.get("manual_name") == expected_name
        if same_manual and source.get("page_number") in pages:
            return position
    return None


def ask(api, question, scope):
    body = {"question": question}
    if scope is not None:
        body["manual_ids"] = scope
    started = time.monotonic()
    status, payload = api.call("POST", "/api/query", body)
    elapsed = time.monotonic() - started
    return status, payload, elapsed


def evaluate(api, questions, ids, scope, bm25=None):
    rows = []
    for number, question in enumerate(questions, start=1):
        status, payload, elapsed = ask(api, question["question"], scope)
        row = {
            "id": question["id"],
            "question": question["question"],
            "manual": question["manual"],
            "pages": question["pages"],
            "kind": question.get("kind"),
            "seconds": round(elapsed, 3),
        }
        if bm25 is not None and question["manual"] in bm25.manuals:
            row["bm25_rank"] = baseline_rank(bm25, question)
        if status != 200:
            row.update(error=error_text(status, payload), context_found=None, rank=None, sources=[])
            log(f"[{number}/{len(questions)}] {question['id']}: request failed: {row['error']}")
        else:
            sources = payload.get("sources") or []
            rank = None
            if question["manual"] is not None:
                rank = rank_of(sources, ids.get(question["manual"]), question["manual"], question["pages"])
            row.update(
                context_found=payload.get("context_found"),
                rank=rank,
                answer=(payload.get("answer") or "")[:400],
                cache_status=payload.get("cache_status"),
                response_time_ms=payload.get("response_time_ms"),
                sources=[
                    {
                        "manual_name": source.get("manual_name"),
                        "page_number": source.get("page_number"),
                        "score": source.get("score"),
                        "chunk_text": (source.get("chunk_text") or "")[:160],
                    }
                    for source in sources
                ],
            )
        row["correct_refusal"] = (
            row["context_found"] is not None and row["context_found"] == (question["manual"] is not None)
        )
        rows.append(row)
        if number % 10 == 0 or number == len(questions):
            log(f"asked {number}/{len(questions)}")
    return rows


# --- the floor: BM25 over whole pages ---------------------------------------------------------

STOP_WORDS = set("""a an and are as at be by can do does for from how i if in is it its me my of on or
should the to what when where which who why will with you your""".split())


def words(text):
    return [word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in STOP_WORDS]


def manual_pages(path):
    """The text of each page of a manual file as the server numbers its pages (from 1), where
    this script can know them: a PDF's pages (pdftotext; form feeds end them) and a text manual
    whose pages are separated by form feeds. `None` otherwise: the server cuts Markdown and
    text without form feeds into sections at its headings, which is not repeated here."""
    if path.endswith(".pdf"):
        try:
            text = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True,
                                  check=True).stdout.decode("utf-8", errors="replace")
        except (OSError, subprocess.CalledProcessError):
            return None
        return text.split("\f")
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    return text.split("\f") if "\f" in text else None


class Bm25Pages:
    """Okapi BM25 (k1 = 1.2, b = 0.75) over every page of the given manuals: a plain search box,
    the floor every number of the evaluation is shown next to."""

    def __init__(self, pages):
        self.manuals = set(pages)
        self.pages = [(name, number, words(text)) for name, texts in pages.items()
                      for number, text in enumerate(texts, start=1)]
        self.average = sum(len(terms) for _, _, terms in self.pages) / max(len(self.pages), 1)
        self.frequency = [Counter(terms) for _, _, terms in self.pages]
        documents = Counter(term for counts in self.frequency for term in counts)
        total = len(self.pages)
        self.idf = {term: math.log(1 + (total - n + 0.5) / (n + 0.5)) for term, n in documents.items()}

    def rank(self, question, limit=10):
        terms = set(words(question))
        scored = []
        for (name, number, page_terms), counts in zip(self.pages, self.frequency):
            score = 0.0
            for term in terms & counts.keys():
                tf = counts[term]
                score += self.idf[term] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(page_terms) / self.average))
            if score > 0:
                scored.append((score, name, number))
        scored.sort(key=lambda entry: -entry[0])
        return [(name, number) for _, name, number in scored[:limit]]


def baseline_rank(bm25, question):
    for position, (name, number) in enumerate(bm25.rank(question["question"]), start=1):
        if name == question["manual"] and number in question["pages"]:
            return position
    return None


def ratio(numerator, denominator):
    return round(numerator / denominator, 4) if denominator else None


def summarize(rows):
    answerable = [row for row in rows if row["manual"] is not None]
    unanswerable = [row for row in rows if row["manual"] is None]
    ranks = [row["rank"] for row in answerable]
    covered = [row for row in answerable if "bm25_rank" in row]
    metrics = {
        "questions": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "failed_requests": sum(1 for row in rows if row.get("error")),
        "hit@1": ratio(sum(1 for rank in ranks if rank == 1), len(answerable)),
        "hit@3": ratio(sum(1 for rank in ranks if rank is not None and rank <= 3), len(answerable)),
        "mrr": ratio(sum(1.0 / rank for rank in ranks if rank), len(answerable)),
        # The floor, on the answerable questions whose manual's pages the script can read, and
        # ours on the same questions.
        "bm25_questions": len(covered),
        "bm25_hit@1": ratio(sum(1 for row in covered if row["bm25_rank"] == 1), len(covered)),
        "bm25_hit@3": ratio(sum(1 for row in covered if (row["bm25_rank"] or 99) <= 3), len(covered)),
        "hit@1_on_bm25_questions": ratio(sum(1 for row in covered if row["rank"] == 1), len(covered)),
        "hit@3_on_bm25_questions": ratio(
            sum(1 for row in covered if row["rank"] is not None and row["rank"] <= 3), len(covered)),
        "refusal_accuracy": ratio(sum(1 for row in rows if row["correct_refusal"]), len(rows)),
        "refusal_rate_unanswerable": ratio(
            sum(1 for row in unanswerable if row["context_found"] is False), len(unanswerable)
        ),
        "false_refusal_rate": ratio(
            sum(1 for row in answerable if row["context_found"] is False), len(answerable)
        ),
    }
    per_manual = {}
    for row in answerable:
        entry = per_manual.setdefault(row["manual"], {"questions": 0, "hit1": 0, "hit3": 0, "rr": 0.0,
                                                      "bm25_hit1": 0, "bm25_hit3": 0})
        entry["questions"] += 1
        entry["covered"] = entry.get("covered", False) or "bm25_rank" in row
        entry["bm25_hit1"] += row.get("bm25_rank") == 1
        entry["bm25_hit3"] += (row.get("bm25_rank") or 99) <= 3
        entry["hit1"] += row["rank"] == 1
        entry["hit3"] += row["rank"] is not None and row["rank"] <= 3
        entry["rr"] += 1.0 / row["rank"] if row["rank"] else 0.0
    metrics["per_manual"] = {
        name: {
            "questions": entry["questions"],
            "hit@1": ratio(entry["hit1"], entry["questions"]),
            "hit@3": ratio(entry["hit3"], entry["questions"]),
            "mrr": ratio(entry["rr"], entry["questions"]),
            "bm25_hit@1": ratio(entry["bm25_hit1"], entry["questions"]) if entry.get("covered") else None,
            "bm25_hit@3": ratio(entry["bm25_hit3"], entry["questions"]) if entry.get("covered") else None,
        }
        for name, entry in sorted(per_manual.items())
    }
    return metrics


def fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def source_label(source):
    return f"{source['manual_name']} p{source['page_number']}"


def print_table(metrics, rows):
    print()
    print(f"{'manual':<30} {'n':>3} {'hit@1':>6} {'hit@3':>6} {'MRR':>6}   BM25 pages: {'hit@1':>6} {'hit@3':>6}")
    for name, entry in metrics["per_manual"].items():
        print(f"{name:<30} {entry['questions']:>3} {fmt(entry['hit@1']):>6} {fmt(entry['hit@3']):>6} {fmt(entry['mrr']):>6}"
              f"               {fmt(entry['bm25_hit@1']):>6} {fmt(entry['bm25_hit@3']):>6}")
    print(f"{'all answerable':<30} {metrics['answerable']:>3} {fmt(metrics['hit@1']):>6} {fmt(metrics['hit@3']):>6} {fmt(metrics['mrr']):>6}")
    print(f"{'the floor covers':<30} {metrics['bm25_questions']:>3} {fmt(metrics['hit@1_on_bm25_questions']):>6} "
          f"{fmt(metrics['hit@3_on_bm25_questions']):>6}                      {fmt(metrics['bm25_hit@1']):>6} {fmt(metrics['bm25_hit@3']):>6}")
    print()
    print(f"refusal accuracy (all {metrics['questions']} questions): {fmt(metrics['refusal_accuracy'])}")
    print(f"refusals on the {metrics['unanswerable']} unanswerable questions: {fmt(metrics['refusal_rate_unanswerable'])}")
    print(f"false refusals on the {metrics['answerable']} answerable questions: {fmt(metrics['false_refusal_rate'])}")
    if metrics["failed_requests"]:
        print(f"failed requests: {metrics['failed_requests']}")
    misses = [row for row in rows if row["manual"] is not None and row["rank"] != 1]
    if misses:
        print()
        print("answerable questions not at rank 1 (expected -> got top 3):")
        for row in sorted(misses, key=lambda row: (row["rank"] is None, row["rank"] or 0)):
            got = ", ".join(source_label(source) for source in row["sources"][:3]) or "(no sources)"
            print(f"  {row['id']:<8} rank {row['rank'] or '-':>2}  {row['manual']} p{row['pages']} -> {got}")
    wrong = [row for row in rows if not row["correct_refusal"]]
    if wrong:
        print()
        print("refusals wrong (context_found):")
        for row in wrong:
            print(f"  {row['id']:<8} context_found={row['context_found']}  {row['question']}")


def write_reports(report_dir, metrics, rows, meta):
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "report.json"), "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "metrics": metrics, "questions": rows}, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    lines = [
        "# Answer-quality evaluation",
        "",
        f"{meta['finished']} against `{meta['api']}`, {metrics['questions']} questions "
        f"({metrics['answerable']} answerable, {metrics['unanswerable']} unanswerable), "
        f"{meta['seconds']:.0f} s.",
        "",
        "| metric | value | BM25 over pages (the floor) | target |",
        "|---|---|---|---|",
        f"| hit@1 | {fmt(metrics['hit@1'])} | | ≥ {TARGETS['hit@1']} |",
        f"| hit@3 | {fmt(metrics['hit@3'])} | | ≥ {TARGETS['hit@3']} |",
        f"| hit@1 on the {metrics['bm25_questions']} questions the floor covers | {fmt(metrics['hit@1_on_bm25_questions'])} | {fmt(metrics['bm25_hit@1'])} | |",
        f"| hit@3 on the {metrics['bm25_questions']} questions the floor covers | {fmt(metrics['hit@3_on_bm25_questions'])} | {fmt(metrics['bm25_hit@3'])} | |",
        f"| MRR | {fmt(metrics['mrr'])} | | |",
        f"| refusal accuracy (all questions) | {fmt(metrics['refusal_accuracy'])} | | ≥ {TARGETS['refusal_accuracy']} |",
        f"| refusals on unanswerable questions | {fmt(metrics['refusal_rate_unanswerable'])} | | |",
        f"| false refusals on answerable questions | {fmt(metrics['false_refusal_rate'])} | | |",
        "",
        "| manual | questions | hit@1 | hit@3 | MRR | BM25 hit@1 | BM25 hit@3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in metrics["per_manual"].items():
        lines.append(f"| {name} | {entry['questions']} | {fmt(entry['hit@1'])} | {fmt(entry['hit@3'])} | {fmt(entry['mrr'])} "
                     f"| {fmt(entry['bm25_hit@1'])} | {fmt(entry['bm25_hit@3'])} |")
    lines += [
        "",
        "| id | question | expected | rank | context_found | top 3 sources |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        expected = f"{row['manual']} p{','.join(str(page) for page in row['pages'])}" if row["manual"] else "(none)"
        top = "; ".join(source_label(source) for source in row["sources"][:3]) or "–"
        if row.get("error"):
            top = "error: " + row["error"]
        question = row["question"].replace("|", "\\|")
        mark = "" if row["correct_refusal"] else " ✗"
        lines.append(
            f"| {row['id']} | {question} | {expected} | {row['rank'] or '–'} | {row['context_found']}{mark} | {top.replace('|', '/')} |"
        )
    with open(os.path.join(report_dir, "report.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Retrieval and refusal evaluation of a Manuel API on labelled questions.",
        epilog="See the module docstring (head of this file) for the exact scoring.",
    )
    parser.add_argument("--api", default=os.environ.get("MANUEL_API"), help="base URL of the API (env MANUEL_API)")
    parser.add_argument("--token", default=os.environ.get("MANUEL_TOKEN"), help="bearer token (env MANUEL_TOKEN)")
    parser.add_argument("--questions", default=os.path.join(REPO_ROOT, "eval", "questions.json"))
    parser.add_argument("--manuals", default=os.path.join(REPO_ROOT, ".tools", "eval-manuals"), help="directory with the manuals the questions name")
    parser.add_argument("--report-dir", default=os.path.join(REPO_ROOT, "eval", "report"))
    parser.add_argument("--skip-upload", action="store_true", help="use manuals already uploaded, found by name")
    parser.add_argument("--all-manuals", action="store_true", help="search all the account's manuals (no manual_ids)")
    parser.add_argument("--only", help="comma-separated question ids to ask (the others are skipped)")
    parser.add_argument("--check", action="store_true", help="exit 1 when below the targets")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for the manuals to be ready (900)")
    parser.add_argument("--max-wait", type=float, default=120.0, help="longest Retry-After to honour, seconds (120)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (120)")
    args = parser.parse_args(argv)
    if not args.api or not args.token:
        parser.error("--api and --token (or MANUEL_API and MANUEL_TOKEN) are required")

    started = time.monotonic()
    try:
        questions = load_questions(args.questions)
        if args.only:
            wanted = set(args.only.split(","))
            questions = [question for question in questions if question["id"] in wanted]
        names = sorted({question["manual"] for question in questions if question["manual"]})
        # The manuals of the evaluation are every manual any question names, even when --only
        # picks a few, so the searched corpus is always the same.
        all_names = sorted({question["manual"] for question in load_questions(args.questions) if question["manual"]})
        api = Api(args.api, args.token, args.timeout, args.max_wait)
        if args.skip_upload:
            ids = find_manuals(api, all_names)
        else:
            ids = upload_manuals(api, all_names, args.manuals)
        pages = wait_ready(api, ids, args.ready_timeout)
        scope = None if args.all_manuals else [ids[name] for name in all_names]
        check_quota(api, len(questions))
        log(f"asking {len(questions)} questions ({len(names)} manuals expected in answers)")
        asked = time.monotonic()
        page_texts = {name: manual_pages(os.path.join(args.manuals, name)) for name in all_names}
        readable = {name: texts for name, texts in page_texts.items() if texts is not None}
        bm25 = Bm25Pages(readable) if readable else None
        if len(readable) < len(all_names):
            log("the BM25 floor leaves out " + ", ".join(sorted(set(all_names) - set(readable)))
                + " (pages cut at headings by the server, or no pdftotext)")
        rows = evaluate(api, questions, ids, scope, bm25)
        query_seconds = time.monotonic() - asked
    except Fatal as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        return 130

    metrics = summarize(rows)
    meta = {
        "api": args.api,
        "questions_file": os.path.relpath(args.questions, REPO_ROOT),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.monotonic() - started, 1),
        "query_seconds": round(query_seconds, 1),
        "scope": "all manuals of the account" if args.all_manuals else "the evaluated manuals (manual_ids)",
        "manuals": {name: {"id": ids[name], "pages": pages.get(name)} for name in all_names},
        "targets": TARGETS,
    }
    print_table(metrics, rows)
    write_reports(args.report_dir, metrics, rows, meta)
    print()
    print(f"{len(rows)} questions in {query_seconds:.0f} s ({meta['seconds']:.0f} s in all); "
          f"reports in {os.path.relpath(args.report_dir)}/report.md and report.json")

    if args.check:
        below = [
            f"{name} {fmt(metrics[name])} < {target}"
            for name, target in TARGETS.items()
            if metrics[name] is None or metrics[name] < target
        ]
        if below:
            print("below target: " + "; ".join(below))
            return 1
        print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
