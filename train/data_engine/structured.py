"""Structured (JSON) replies from chat agents: parse, validate, retry, and record every failure.

`ask_json(backend, conversations, validators, retries, backoff)` sends a batch of conversations; each reply must hold
one JSON object that its validator accepts (the validator returns the normalised value or raises `ValueError`).
Unusable replies (no JSON, a refusal, a failed validation) and retryable HTTP errors are retried up to `retries`
attempts in total; what is still failing is returned as a failed `Outcome` with every attempt's error -- never
dropped, never replaced by made-up data.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from videorefer.data.chat_client import ChatError

from .backends import ChatBackend

__all__ = ["Outcome", "ask_json", "parse_json_reply", "Validator"]

Validator = Callable[[Any], Any]
REFUSAL = re.compile(r"\b(I'?m sorry|I am sorry|I cannot|I can'?t|I'?m unable|I am unable|as an AI)\b", re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@dataclass
class Outcome:
    """The result of one structured request: `value` when `ok`, else the errors of every attempt."""

    ok: bool
    value: Any = None
    reply: str | None = None  # the last raw reply text (kept for failures, to debug prompts)
    errors: list[str] = field(default_factory=list)
    attempts: int = 0

    def failure(self) -> dict:
        """How a failure is recorded on disk."""
        return {"error": " | ".join(self.errors), "attempts": self.attempts,
                "reply": None if self.reply is None else self.reply[:500]}


def parse_json_reply(text: str) -> Any:
    """The JSON object in a reply: the whole text, a ```json fence, or the first `{...}` in prose.

    Raises `ValueError` naming a refusal or the absence of JSON.
    """
    candidates = [text.strip()] + [m.strip() for m in _FENCE.findall(text)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
            return value
        except json.JSONDecodeError:
            continue
    if REFUSAL.search(text):
        raise ValueError(f"refusal: {text[:200]!r}")
    raise ValueError(f"no JSON object in the reply: {text[:200]!r}")


def ask_json(
    backend: ChatBackend,
    conversations: list[list[dict]],
    validators: list[Validator],
    retries: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """One `Outcome` per conversation, in order (see the module docstring)."""
    if len(conversations) != len(validators):
        raise ValueError(f"got {len(conversations)} conversations but {len(validators)} validators")
    outcomes = [Outcome(ok=False) for _ in conversations]
    pending = list(range(len(conversations)))
    for attempt in range(1, retries + 1):
        replies = backend.chat_batch([conversations[i] for i in pending])
        still: list[int] = []
        for i, reply in zip(pending, replies):
            outcome = outcomes[i]
            outcome.attempts = attempt
            if isinstance(reply, ChatError):
                outcome.errors.append(f"attempt {attempt}: {reply}")
                if reply.retryable:
                    still.append(i)
                continue
            outcome.reply = reply
            try:
                outcome.value = validators[i](parse_json_reply(reply))
                outcome.ok = True
            except ValueError as err:
                outcome.errors.append(f"attempt {attempt}: {err}")
                still.append(i)
        pending = still
        if not pending:
            break
        if attempt < retries and backoff > 0:
            sleep(backoff * 2 ** (attempt - 1))
    return outcomes


# ------------------------------------------------------------------------------------------- validation helpers
def require_dict(value: Any, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object with {list(keys)}, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"the JSON object lacks {missing}")
    return value


def require_text(value: Any, name: str, max_chars: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name!r} must be a non-empty string, got {value!r:.80}")
    if len(value) > max_chars:
        raise ValueError(f"{name!r} is longer than {max_chars} characters")
    return " ".join(value.split())
