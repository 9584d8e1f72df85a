"""Bench-D judge against a real OpenAI-compatible HTTP server on 127.0.0.1, score extraction, the table, and the judge
prompt (ours by default, or a file such as the official one in a user's checkout, recorded in every score)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.bench_d import PROMPT, format_table, summarize
from videorefer.data.jsonl import read_jsonl
from bench.judge import (
    DIMENSIONS, OFFICIAL_PROMPT_PATH, OUR_PROMPT, SYSTEM_PROMPT, JudgeClient, extract_scores, judge_predictions,
    load_judge_prompt,
)

REPO = Path(__file__).resolve().parents[1]
GOOD = {"Subject Correspondence": 4, "Appearance Description": 3, "Temporal Description": 2,
        "Hallucination Detection": 5}


class ScriptedJudge(BaseHTTPRequestHandler):
    """Replies according to the prediction text in the user message (requests arrive concurrently, in any order).

    ``<behaviour>`` in the prediction picks the script; ``_once`` variants fail on the first call only.
    """

    calls: Counter = Counter()
    requests: list = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pred = body["messages"][1]["content"].split("##Predicted answer: ")[1].strip()
        with self.lock:
            self.calls[pred] += 1
            n = self.calls[pred]
            self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        first = n == 1
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps(GOOD)}}]}).encode()
        try:
            if pred == "always500" or (pred == "err500_once" and first):
                self._send(500, b'{"error": "overloaded"}')
            elif pred == "auth401":
                self._send(401, b'{"error": "invalid api key"}')
            elif pred == "badbody_once" and first:
                self._send(200, b"<html>gateway</html>")
            elif pred == "noscores_once" and first:
                content = "Subject Correspondence: 4, Appearance Description: 3. Overall a fine description."
                self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())
            elif pred == "slow_once" and first:
                time.sleep(1.0)  # longer than the client's timeout
                self._send(200, reply)
            else:
                self._send(200, reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on the slow reply
            pass


@pytest.fixture()
def server():
    ScriptedJudge.calls = Counter()
    ScriptedJudge.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _predictions(*behaviours: str) -> list[dict]:
    return [{"id": i, "video": f"v{i}.mp4", "caption": f"reference {i}", "pred": b} for i, b in enumerate(behaviours)]


def test_judge_retries_transient_failures_and_records_permanent_ones(server: str, tmp_path: Path) -> None:
    behaviours = ["ok", "err500_once", "badbody_once", "noscores_once", "slow_once", "always500", "auth401"]
    client = JudgeClient(url=server, model="judge-x", api_key="sk-test", timeout=0.3, retries=3, backoff=0.01)
    output = tmp_path / "scores.jsonl"
    counts = judge_predictions(_predictions(*behaviours), str(output), client, workers=4)
    assert counts == {"judged": 5, "errors": 2, "skipped": 0}

    records = {r["pred"]: r for r in read_jsonl(output)}
    assert sorted(records) == sorted(behaviours)  # every item recorded, none dropped
    for name, attempts in [("ok", 1), ("err500_once", 2), ("badbody_once", 2), ("noscores_once", 2),
                           ("slow_once", 2)]:
        assert records[name]["scores"] == GOOD and records[name]["attempts"] == attempts, records[name]
        assert records[name]["Subject Correspondence"] == 4  # also top-level, as the official analyzer reads
    assert "scores" not in records["always500"] and records["always500"]["attempts"] == 3
    assert records["always500"]["error"].count("HTTP 500") == 3
    assert records["auth401"]["attempts"] == 1 and "HTTP 401" in records["auth401"]["error"]  # not retried
    assert ScriptedJudge.calls["always500"] == 3 and ScriptedJudge.calls["auth401"] == 1

    sent = ScriptedJudge.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "judge-x" and sent["body"]["messages"][0]["role"] == "system"
    assert all(dim in sent["body"]["messages"][0]["content"] for dim in DIMENSIONS)
    user = next(r for r in ScriptedJudge.requests if r["body"]["messages"][1]["content"].endswith("ok\n"))
    assert user["body"]["messages"][1]["content"] == "##Correct answer: reference 0\n##Predicted answer: ok\n"

    # Resume: only the two failures are sent again; the later success supersedes the error line.
    before = Counter(ScriptedJudge.calls)
    counts = judge_predictions(_predictions(*behaviours), str(output), client, workers=2)
    assert counts == {"judged": 0, "errors": 2, "skipped": 5}
    assert ScriptedJudge.calls - before == Counter({"always500": 3, "auth401": 1})
    summary = summarize(read_jsonl(output))
    assert summary["n"] == 5 and summary["failed"] == [5, 6]


def test_judge_cli_end_to_end_with_key_from_environment(server: str, tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in _predictions("ok", "err500_once")))
    env = {"PATH": "/usr/bin:/bin", "MY_JUDGE_KEY": "sk-env", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_d", "judge", str(preds), "--output", str(tmp_path / "s.jsonl"),
         "--judge-url", server, "--api-key-env", "MY_JUDGE_KEY", "--backoff", "0.01", "--workers", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "average: 3.50"  # (4 + 3 + 2 + 5) / 4
    assert {r["auth"] for r in ScriptedJudge.requests} == {"Bearer sk-env"}
    assert {r["body"]["model"] for r in ScriptedJudge.requests} == {"gpt-4o"}  # the default judge model


def test_judge_cli_exits_nonzero_when_items_fail(server: str, tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps(_predictions("always500")[0]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_d", "judge", str(preds), "--output", str(tmp_path / "s.jsonl"),
         "--judge-url", server, "--retries", "2", "--backoff", "0.01"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "1 item(s) failed" in result.stderr
    assert read_jsonl(tmp_path / "s.jsonl")[0]["attempts"] == 2


REPLIES = [
    (json.dumps(GOOD), GOOD),
    ("```json\n" + json.dumps(GOOD) + "\n```", GOOD),
    ('Here are my scores: {"subject correspondence": "4", "appearance_description": 3.0, '
     '"Temporal Description": "2/5", "Hallucination Detection": 5} Hope this helps.', GOOD),
    ('{"scores": {"SC": 4, "AD": 3, "TD": 2, "HD": 5}, "reason": "ok"}', GOOD),
    ("Subject Correspondence: 4\nAppearance Description: 3\nTemporal Description: 2\nHallucination Detection: 5",
     GOOD),
    ("**Subject Correspondence**: 4/5\n- **Appearance Description** - 3\nTemporal Description (TD): 2\n"
     "Hallucination Detection = 5.", GOOD),
    ("SC: 4, AD: 3, TD: 2, HD: 5", GOOD),
    ("Subject Correspondence - score: 4. Appearance Description score: 3. Temporal Description: 2. "
     "Hallucination Detection: 5.", GOOD),
]


@pytest.mark.parametrize("reply, expected", REPLIES)
def test_extract_scores(reply: str, expected: dict) -> None:
    assert extract_scores(reply) == expected


@pytest.mark.parametrize("reply", [
    "Subject Correspondence: 4\nAppearance Description: 3\nTemporal Description: 2",  # one missing
    json.dumps({**GOOD, "Temporal Description": 3.5}),  # not an integer
    json.dumps({**GOOD, "Hallucination Detection": 7}),  # out of range
    "Subject Correspondence: 8/10, Appearance Description: 3, Temporal Description: 2, Hallucination Detection: 5",
    "I cannot evaluate this.",
])
def test_extract_scores_rejects_incomplete_or_invalid(reply: str) -> None:
    with pytest.raises(ValueError, match="lacks valid"):
        extract_scores(reply)


def test_table_matches_hand_computed_averages() -> None:
    records = [
        {"id": 0, "scores": dict(zip(DIMENSIONS, [4, 3, 2, 5]))},
        {"id": 1, "scores": dict(zip(DIMENSIONS, [5, 2, 3, 1]))},
        {"id": 2, "error": "HTTP 500"},
        {"id": 2, "scores": dict(zip(DIMENSIONS, [3, 4, 1, 3]))},  # a later success supersedes the error
        {"id": 3, "error": "timeout"},
    ]
    summary = summarize(records)
    assert summary["n"] == 3 and summary["failed"] == [3]
    assert summary["averages"] == pytest.approx(dict(zip(DIMENSIONS, [4.0, 3.0, 2.0, 3.0])))
    assert summary["mean"] == pytest.approx(3.0)
    table = format_table(summary)
    assert table.splitlines()[-1] == "average: 3.00"
    assert "1 item(s) have no score" in table and "VideoRefer-7B single (paper)" in table and "4.41" in table


def test_bench_d_prompt_is_official() -> None:
    assert PROMPT == "Please give a detailed description of the highlighted object [<region>] in the video."


# ---------------------------------------------------------------------------------------------------- judge prompt
MY_PROMPT = "You judge descriptions. Give four scores 0-5 as lines like `1. Subject Correspondence: 5`.\n"


def test_judge_prompt_from_a_file_is_sent_and_recorded_in_every_score(server: str, tmp_path: Path) -> None:
    """`--judge-prompt FILE` (read at run time): its text is the system message and every record names it by sha256;
    the default is our own wording; a score file is never continued, or scored, with another prompt."""
    import hashlib

    prompt_file = tmp_path / "my_prompt.txt"
    prompt_file.write_text(MY_PROMPT)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in _predictions("ok", "ok2")))

    def judge(output: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bench.bench_d", "judge", str(preds), "--output", str(tmp_path / output),
             "--judge-url", server, "--backoff", "0.01", *extra],
            cwd=REPO, capture_output=True, text=True, timeout=60)

    result = judge("mine.jsonl", "--judge-prompt", str(prompt_file))
    assert result.returncode == 0, result.stderr
    assert {r["body"]["messages"][0]["content"] for r in ScriptedJudge.requests} == {MY_PROMPT}
    sha = hashlib.sha256(MY_PROMPT.encode()).hexdigest()
    records = read_jsonl(tmp_path / "mine.jsonl")
    assert [r["judge_prompt"] for r in records] == [
        {"name": "file my_prompt.txt", "sha256": sha, "file": str(prompt_file.resolve())}] * 2
    assert f"judged with the prompt: file my_prompt.txt (sha256 {sha[:12]})" in result.stdout

    ScriptedJudge.requests = []
    result = judge("ours.jsonl")  # the default: our rubric
    assert result.returncode == 0, result.stderr
    assert {r["body"]["messages"][0]["content"] for r in ScriptedJudge.requests} == {SYSTEM_PROMPT}
    assert {r["judge_prompt"]["name"] for r in read_jsonl(tmp_path / "ours.jsonl")} == {OUR_PROMPT.name}

    # Continuing the file judged with our prompt with another prompt is refused, and so is scoring a mixed file.
    refused = judge("ours.jsonl", "--judge-prompt", str(prompt_file))
    assert refused.returncode != 0 and "judged with another prompt" in refused.stderr
    (tmp_path / "mixed.jsonl").write_text((tmp_path / "mine.jsonl").read_text()
                                          + (tmp_path / "ours.jsonl").read_text().replace('"id": 1', '"id": 9'))
    with pytest.raises(ValueError, match="judged with different prompts"):
        summarize(read_jsonl(tmp_path / "mixed.jsonl"))


def test_judge_prompt_from_a_checkout_is_named_official_when_it_is(tmp_path: Path, monkeypatch) -> None:
    """A folder is read as a checkout of the official repository (the prompt at its official path); the text is
    named `official` only when its sha256 is the official prompt's (here a stand-in text and hash)."""
    from bench import judge as judge_module

    checkout = tmp_path / "VideoRefer"
    (checkout / OFFICIAL_PROMPT_PATH).parent.mkdir(parents=True)
    (checkout / OFFICIAL_PROMPT_PATH).write_text(MY_PROMPT)
    assert load_judge_prompt(checkout).name == "file system.txt"
    monkeypatch.setattr(judge_module, "OFFICIAL_PROMPT_SHA256", load_judge_prompt(checkout).sha256)
    prompt = load_judge_prompt(checkout)
    assert prompt.name.startswith("official") and prompt.text == MY_PROMPT
    table = format_table({**summarize([{"id": 0, "scores": GOOD, "judge_prompt": prompt.record()}])})
    assert "not the official prompt" not in table
    with pytest.raises(ValueError, match="no judge prompt file"):
        load_judge_prompt(tmp_path / "elsewhere")


def test_replies_in_the_official_prompts_format_are_read() -> None:
    reply = ("1. Subject Correspondence: 4\\nExplanation: the same dog.\n2. Appearance Description: 3\\nExplanation: "
             "colour right.\n3. Temporal Description: 2\\nExplanation: no jump.\n4. Hallucination Detection: 5\\n"
             "Explanation: nothing added.")
    assert extract_scores(reply) == GOOD
