#!/usr/bin/env python3
"""Spoken questions: how well a Manuel API hears them and answers them from the right page.

Speaks a sample of the answerable questions of eval/questions.json with espeak-ng in several
voices and at several rates (sox makes them 16 kHz mono 16-bit WAV, as the app records), then
for each clip:
 - POST /api/transcribe: the transcript and the wall time it took;
 - POST /api/query with the clip (the app's body: empty question, file_data, content_type):
   the rank of the expected page among the sources, as scripts/eval.py counts it.

Reports the word error rate of the transcripts (words lower-cased, punctuation dropped), the
share of clips answered from the right page first (and in the first three), beside the same
share for the typed questions, and the median transcription time of clips 4–6 s long. Then
speaks the unanswerable questions (about things no manual covers) and reports the share
refused, as a typed one would be.

Usage: scripts/eval-speech.py --api URL --token TOKEN [--sample N] [--report FILE]
The manuals must be uploaded and ready (run scripts/eval.py first, which uploads them).
Exit status 0, or 2 when the run could not be done.
"""

import argparse
import base64
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("manuel_eval", os.path.join(HERE, "eval.py"))
manuel_eval = importlib.util.module_from_spec(spec)
spec.loader.exec_module(manuel_eval)

# (espeak-ng voice, words per minute): a US and a British male voice, a female variant, a
# Scottish accent; a slow, an ordinary and a brisk rate.
VOICES = [("en-us", 150), ("en-gb", 175), ("en-us+f3", 175), ("en-gb-scotland", 200)]


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))


def edit_distance(reference, hypothesis):
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def speak(text, voice, rate, directory):
    raw = os.path.join(directory, "raw.wav")
    clip = os.path.join(directory, "clip.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", raw, text], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", clip], check=True)
    with open(clip, "rb") as handle:
        data = handle.read()
    seconds = (len(data) - 44) / (16000 * 2)
    return data, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--questions", default=os.path.join(manuel_eval.REPO_ROOT, "eval", "questions.json"))
    parser.add_argument("--sample", type=int, default=40, help="answerable questions spoken (every k-th, 40)")
    parser.add_argument("--report", help="write the per-clip results here (JSON)")
    args = parser.parse_args()

    everything = manuel_eval.load_questions(args.questions)
    questions = [q for q in everything if q["manual"] is not None]
    unanswerable = [q for q in everything if q["manual"] is None]
    step = max(1, len(questions) // args.sample)
    sample = questions[::step][: args.sample]
    api = manuel_eval.Api(args.api, args.token, timeout=120.0, max_wait=120.0)
    # The same scope as scripts/eval.py: every manual the questions name.
    ids = manuel_eval.find_manuals(api, sorted({q["manual"] for q in questions}))

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for number, question in enumerate(sample):
            voice, rate = VOICES[number % len(VOICES)]
            audio, seconds = speak(question["question"], voice, rate, directory)
            encoded = base64.b64encode(audio).decode("ascii")
            started = time.monotonic()
            status, heard = api.call("POST", "/api/transcribe",
                                     {"audio_data": encoded, "content_type": "audio/wav"})
            transcribe_seconds = time.monotonic() - started
            # 400: nothing was recognised, which counts as every word missed.
            if status not in (200, 400):
                raise manuel_eval.Fatal(f"transcribe: {status} {heard}")
            transcript = (heard.get("transcription") if status == 200 else "") or ""
            status, answer = api.call("POST", "/api/query", {
                "question": "", "file_data": encoded, "content_type": "audio/wav",
                "include_sources": True, "manual_ids": sorted(set(ids.values())),
            })
            if status not in (200, 400):
                raise manuel_eval.Fatal(f"query: {status} {answer}")
            if status == 400:
                answer = {}
            typed_status, typed = api.call("POST", "/api/query", {
                "question": question["question"], "manual_ids": sorted(set(ids.values())),
            })
            rank = manuel_eval.rank_of(answer.get("sources") or [], ids.get(question["manual"]),
                                       question["manual"], question["pages"])
            typed_rank = manuel_eval.rank_of((typed or {}).get("sources") or [], ids.get(question["manual"]),
                                             question["manual"], question["pages"])
            reference = words(question["question"])
            errors = edit_distance(reference, words(transcript))
            rows.append({
                "id": question["id"], "voice": voice, "rate": rate, "seconds": round(seconds, 2),
                "transcribe_seconds": round(transcribe_seconds, 3), "question": question["question"],
                "transcript": transcript, "word_errors": errors, "words": len(reference),
                "rank": rank, "typed_rank": typed_rank,
            })
            manuel_eval.log(f"[{number + 1}/{len(sample)}] {voice} {rate}: {errors}/{len(reference)} word errors, "
                            f"rank {rank} (typed {typed_rank}): {transcript!r}")
        # Questions no manual covers, spoken: a misheard word must not turn them into answers.
        refusals = []
        for number, question in enumerate(unanswerable):
            voice, rate = VOICES[number % len(VOICES)]
            audio, _ = speak(question["question"], voice, rate, directory)
            status, answer = api.call("POST", "/api/query", {
                "question": "", "file_data": base64.b64encode(audio).decode("ascii"),
                "content_type": "audio/wav", "manual_ids": sorted(set(ids.values())),
            })
            if status not in (200, 400):
                raise manuel_eval.Fatal(f"query: {status} {answer}")
            refused = status == 400 or not answer.get("context_found")
            refusals.append({"id": question["id"], "voice": voice, "refused": refused,
                             "question": question["question"],
                             "transcript": (answer or {}).get("question")})
            manuel_eval.log(f"[unanswerable {number + 1}/{len(unanswerable)}] {voice} {rate}: "
                            f"{'refused' if refused else 'answered'}: {question['question']!r}")

    total_words = sum(row["words"] for row in rows)
    wer = sum(row["word_errors"] for row in rows) / max(1, total_words)
    share = lambda key, limit: sum(1 for row in rows if row[key] is not None and row[key] <= limit) / max(1, len(rows))
    five_seconds = [row["transcribe_seconds"] for row in rows if 4.0 <= row["seconds"] <= 6.0]
    summary = {
        "clips": len(rows),
        "word_error_rate": round(wer, 3),
        "spoken_hit@1": round(share("rank", 1), 3),
        "spoken_hit@3": round(share("rank", 3), 3),
        "typed_hit@1": round(share("typed_rank", 1), 3),
        "typed_hit@3": round(share("typed_rank", 3), 3),
        "clips_4_to_6_s": len(five_seconds),
        "median_transcribe_seconds_4_to_6_s": round(statistics.median(five_seconds), 3) if five_seconds else None,
        "median_clip_seconds": round(statistics.median(row["seconds"] for row in rows), 2) if rows else None,
        "unanswerable_clips": len(refusals),
        "unanswerable_refused": round(sum(r["refused"] for r in refusals) / max(1, len(refusals)), 3),
    }
    print(json.dumps(summary, indent=2))
    if args.report:
        with open(args.report, "w") as handle:
            json.dump({"summary": summary, "clips": rows, "unanswerable": refusals}, handle, indent=1)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except manuel_eval.Fatal as error:
        manuel_eval.log(f"error: {error}")
        sys.exit(2)
