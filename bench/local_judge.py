"""A local, deterministic TEST judge for Bench-D: an OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1.

*** Its scores mean nothing about description quality. *** It exists so that the whole Bench-D path (runner,
predictions file, the real ``bench.judge`` HTTP client, score extraction, the table) runs offline and in CI. It
scores by word overlap between the reference caption and the prediction, read from the official user-message
layout (``##Correct answer: ...`` / ``##Predicted answer: ...``), and answers with the four scores as JSON:

- Subject Correspondence: 5 x recall of the reference's content words
- Appearance Description: 5 x F1 of content words
- Temporal Description: 5 x recall of the reference's motion words (F1 when it has none)
- Hallucination Detection: 5 x precision of the prediction's content words

each rounded to an integer 0-5. The same request always gets the same reply.

Usage (for trying ``python -m bench.bench_d judge`` by hand)::

    python -m bench.local_judge --port 8765
    python -m bench.bench_d judge preds_d.jsonl --output scores_d.jsonl --judge-url http://127.0.0.1:8765/v1 \
        --judge-model local-test-judge
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.judge import DIMENSIONS
from videorefer.testing.http_server import serve

MODEL_NAME = "local-test-judge"
STOPWORDS = frozenset(
    "a an the and or of to in on at by for with from as is are was were be been it its it's this that these those "
    "there their they them he she his her while then than into over under across during throughout video object "
    "highlighted".split()
)
MOTION_WORDS = frozenset(
    "move moves moving moved walk walks walking run runs running jump jumps stand stands standing sit sits "
    "climb climbs climbing come comes coming stretch stretches stretching turn turns turning rub rubs rubbing "
    "left right up down upwards downwards steadily still stays remains lies rises falls".split()
)
USER_PATTERN = re.compile(r"##Correct answer:(.*?)\n##Predicted answer:(.*)", re.DOTALL)


def content_words(text: str) -> set[str]:
    """Lower-case alphabetic words minus a few stop words."""
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS}


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def overlap_scores(caption: str, pred: str) -> dict[str, int]:
    """The four integer scores 0-5 from word overlap (see the module docstring). Deterministic."""
    ref, hyp = content_words(caption), content_words(pred)
    common = len(ref & hyp)
    recall, precision = _ratio(common, len(ref)), _ratio(common, len(hyp))
    f1 = _ratio(2 * recall * precision, recall + precision) if recall + precision else 0.0
    motion = ref & MOTION_WORDS
    temporal = _ratio(len(motion & hyp), len(motion)) if motion else f1
    values = [recall, f1, temporal, precision]
    return {dim: int(round(5 * v)) for dim, v in zip(DIMENSIONS, values)}


def reply_for(messages: list[dict]) -> str:
    """The judge's reply to a chat request: JSON with the four scores, from the last user message."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    match = USER_PATTERN.search(user if isinstance(user, str) else "")
    if not match:
        raise ValueError("the user message does not follow the '##Correct answer: ...\\n##Predicted answer: ...' "
                         "layout")
    return json.dumps(overlap_scores(match.group(1).strip(), match.group(2).strip()))


class _Handler(BaseHTTPRequestHandler):
    """POST ``/v1/chat/completions`` (or ``/chat/completions``); anything else is 404."""

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            content = reply_for(body.get("messages", []))
        except (ValueError, AttributeError, TypeError) as err:
            self._send(400, {"error": {"message": str(err)}})
            return
        self._send(200, {
            "id": "local-test-judge", "object": "chat.completion", "model": body.get("model", MODEL_NAME),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        })

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep the benchmark output readable
        pass


def local_judge(port: int = 0):
    """Serve the test judge on 127.0.0.1 in a background thread; yields its base URL (``http://127.0.0.1:P/v1``)."""
    return serve(_Handler, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_judge", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    print(f"TEST judge (word overlap; scores mean nothing about quality) at http://127.0.0.1:{args.port}/v1")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
