"""GPT judge for VideoRefer-Bench-D: any OpenAI-compatible chat endpoint, four-dimension rubric, retries, resume.

The official judge (``videorefer/eval/videorefer_bench_d/1.eval_gpt_new.py``) reads its rubric from a ``system.txt``
that is not in the public repository, and never sends a request (its messages are built as a tuple and the
``NameError`` is swallowed by ``except Exception``). The rubric below is therefore ours, written from the paper's and
the benchmark README's definitions of the four dimensions; the user message keeps the official layout
(``##Correct answer: ...`` / ``##Predicted answer: ...``) and the request keeps its sampling settings.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from bench.scoring import RUN_FIELDS
from videorefer.data.jsonl import JsonlWriter, latest_by_id, read_jsonl
from videorefer.data.chat_client import ChatClient, ChatError

DIMENSIONS = ["Subject Correspondence", "Appearance Description", "Temporal Description", "Hallucination Detection"]
ABBREVIATIONS = {"SC": DIMENSIONS[0], "AD": DIMENSIONS[1], "TD": DIMENSIONS[2], "HD": DIMENSIONS[3]}

SYSTEM_PROMPT = """\
You are an expert evaluator of video object descriptions. You are given the correct (reference) description of one \
object in a video and a predicted description of the same object produced by a model. Compare the prediction with \
the reference and rate it on four dimensions, each with an integer score from 0 (worst) to 5 (best):

1. Subject Correspondence: does the subject of the predicted description accurately correspond to the object \
specified in the reference (the same kind of entity, the same individual)?
2. Appearance Description: are the appearance details in the prediction (colour, shape, texture, clothing, size \
and other visual attributes) accurate and consistent with the reference?
3. Temporal Description: is the description of the object's motion, actions and changes over time consistent \
with the movements described in the reference?
4. Hallucination Detection: does the prediction avoid facts, actions or elements that are absent from the \
reference, such as imaginative interpretations or incorrect inferences? 5 means no hallucination at all.

Judge only against the reference description; do not reward length or fluency. Reply with a JSON object and \
nothing else, for example:
{"Subject Correspondence": 4, "Appearance Description": 3, "Temporal Description": 3, "Hallucination Detection": 4}"""


def build_messages(caption: str, pred: str) -> list[dict]:
    """Chat messages for one item (official user-message layout)."""
    user = "##Correct answer: " + caption + "\n" + "##Predicted answer: " + pred + "\n"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------- score extraction
def _canonical(name: str) -> str | None:
    key = re.sub(r"[^a-z]", "", name.lower())
    for dim in DIMENSIONS:
        if key == re.sub(r"[^a-z]", "", dim.lower()):
            return dim
    return ABBREVIATIONS.get(name.strip().upper())


def _as_score(value: object) -> int | None:
    """An integer 0-5 (``4``, ``4.0``, ``"4"``, ``"4/5"``), else None: 4.5 or 7 is not a valid rubric score."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.0+)?)\s*(?:/\s*5)?\s*", value)
        if not match:
            return None
        value = float(match.group(1))
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= value <= 5:
        return int(value)
    return None


def _from_json(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    # Any {...} block, innermost first, so replies wrapped in ```json fences or prose still parse.
    for block in re.findall(r"\{[^{}]*\}", text):
        try:
            data = json.loads(block)
        except json.JSONDecodeError:
            continue
        for name, value in data.items() if isinstance(data, dict) else []:
            dim, score = _canonical(str(name)), _as_score(value)
            if dim and score is not None:
                found.setdefault(dim, score)
    return found


def _from_text(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    names = [re.escape(d) for d in DIMENSIONS] + list(ABBREVIATIONS)
    # "Subject Correspondence: 4", "**SC** - 4/5", "Hallucination Detection (HD): 3"
    pattern = (rf"\b({'|'.join(names)})\b(?:\s*\([A-Z]{{2}}\))?[\s*:\-=\"']*(?:score\b[\s*:\-=\"']*)?"
               r"(\d+(?:\.\d+)?)(?!\.\d)(\s*/\s*\d+)?")
    for name, number, denominator in re.findall(pattern, text, flags=re.IGNORECASE):
        dim = _canonical(name)
        score = _as_score(number) if not denominator or denominator.replace(" ", "") == "/5" else None
        if dim and score is not None:
            found.setdefault(dim, score)
    return found


def extract_scores(reply: str) -> dict[str, int]:
    """The four integer scores 0-5 from a judge reply (JSON, or "Name: 4" lines); ValueError if any is missing."""
    found = _from_json(reply)
    for dim, score in _from_text(reply).items():
        found.setdefault(dim, score)
    missing = [dim for dim in DIMENSIONS if dim not in found]
    if missing:
        raise ValueError(f"judge reply lacks valid 0-5 integer score(s) for {missing}: {reply[:300]!r}")
    return {dim: found[dim] for dim in DIMENSIONS}


# ------------------------------------------------------------------------------------------------------- client
JudgeError = ChatError  # a judge call failed; `retryable` says whether another attempt may succeed


@dataclass
class JudgeClient:
    """Minimal OpenAI-compatible chat client: ``POST {url}/chat/completions``."""

    url: str
    model: str = "gpt-4o"
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 5  # attempts in total
    backoff: float = 2.0  # seconds before the 2nd attempt, doubled each time
    temperature: float = 0.7  # the official judge's sampling settings
    top_p: float = 0.95
    max_tokens: int = 800

    def _call(self, messages: list[dict]) -> str:
        client = ChatClient(url=self.url, model=self.model, api_key=self.api_key, timeout=self.timeout)
        return client.chat(messages, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)

    def judge(self, caption: str, pred: str) -> dict:
        """Scores for one item, retrying transient failures and unusable replies with exponential backoff.

        Returns ``{"scores": {...}, "judge_reply": str, "attempts": n}`` or ``{"error": str, "attempts": n}``.
        """
        messages = build_messages(caption, pred)
        errors: list[str] = []
        for attempt in range(1, self.retries + 1):
            try:
                reply = self._call(messages)
                return {"scores": extract_scores(reply), "judge_reply": reply, "attempts": attempt}
            except (JudgeError, ValueError) as err:
                errors.append(str(err))
                if isinstance(err, JudgeError) and not err.retryable:
                    break
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        return {"error": " | ".join(errors), "attempts": len(errors)}


def judge_predictions(predictions: list[dict], output: str, client: JudgeClient, workers: int = 4) -> dict:
    """Judge every prediction not yet scored in ``output``; append one record per item as it completes.

    Items whose last record is an error are judged again. Returns counts: ``{"judged", "errors", "skipped"}``.
    """
    for k, p in enumerate(predictions):
        missing = [name for name in ("id", "caption", "pred") if name not in p]
        if missing:
            raise ValueError(f"prediction #{k} (id={p.get('id', '?')}) lacks field(s) {missing}")
    done = {key for key, record in latest_by_id(read_jsonl(output)).items() if "scores" in record}
    todo = [p for p in predictions if str(p["id"]) not in done]
    counts = {"judged": 0, "errors": 0, "skipped": len(predictions) - len(todo)}
    print(f"[judge] {len(todo)} to judge with {client.model} at {client.url}, {len(done)} already scored")
    with JsonlWriter(output) as writer, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(client.judge, p["caption"], p["pred"]): p for p in todo}
        for future in as_completed(futures):  # only this thread writes, so lines never interleave
            prediction = futures[future]
            verdict = future.result()  # judge() turns failed calls into {"error": ...}; anything else is a bug
            run = {key: prediction[key] for key in (*RUN_FIELDS, "question_file") if key in prediction}
            record = {"id": prediction["id"], "video": prediction.get("video"), "caption": prediction["caption"],
                      "pred": prediction["pred"], **run, "judge_model": client.model, **verdict}
            if "scores" in verdict:
                record.update(verdict["scores"])  # top-level fields, as the official 3.analyze_score.py reads them
                counts["judged"] += 1
            else:
                counts["errors"] += 1
                print(f"[judge] id={prediction['id']}: FAILED after {verdict['attempts']} attempt(s): "
                      f"{verdict['error'][:200]}")
            writer.write(record)
    print(f"[judge] judged {counts['judged']}, failed {counts['errors']} (rerun to retry failures)")
    return counts
