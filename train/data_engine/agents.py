"""The four chat agents: prompts (OpenAI message format) and validators of their JSON replies.

- Analyzer: raw caption -> object nouns.
- Annotator: sampled frames + noun -> the object's dynamics (actions, motion) and static appearance.
- Reviewer: annotation + a region captioner's description of the mask -> do they refer to the same object?
- Refiner: dynamics + appearance -> detailed caption, short caption, optional multiple-choice questions.

The fifth agent, the Segmentor, is in `segmentor.py`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from videorefer.data.chat_client import image_data_url

from .structured import require_dict, require_text

REGION = "<region>"
LETTERS = "ABCDEF"

ANALYZER_SYSTEM = (
    "You extract the concrete, visible objects (people, animals, things) mentioned in a video caption. "
    "Give each as a short noun phrase (at most 4 words, e.g. 'rabbit', 'red car', 'man in a hat'), most important "
    'first, without duplicates. Reply with a JSON object only: {"objects": ["noun", ...]}'
)
ANNOTATOR_SYSTEM = (
    "You annotate one object in a video, given frames sampled in time order. Write two descriptions of that object "
    "only: 'dynamics' (its actions, motion and changes over the frames) and 'appearance' (its static look: "
    'category, colour, shape, texture, clothing, size). Reply with a JSON object only: '
    '{"dynamics": "...", "appearance": "..."}'
)
REVIEWER_SYSTEM = (
    "You check object annotations of videos. You get an annotation of an object (its name, appearance and "
    "dynamics) and an independent description of the object inside a segmentation mask. Decide whether both refer "
    "to the same object (same kind of entity; compatible appearance). Reply with a JSON object only: "
    '{"match": true or false, "reason": "one sentence"}'
)
REFINER_SYSTEM = (
    "You write training data about one object in a video. From its appearance and dynamics write "
    "'detailed_caption' (3-6 sentences, appearance then actions, in time order, present tense) and "
    "'short_caption' (one sentence). {qa_rule}Reply with a JSON object only: "
    '{{"detailed_caption": "...", "short_caption": "...", "qa": [...]}}'
)
QA_RULE = (
    "Also write 'qa': {n} multiple-choice question(s) about the object that the captions answer; each is "
    '{{"question": "...", "options": ["...", "...", "...", "..."], "answer": "A"}}, where the question names the '
    "object as <region> exactly once (e.g. 'What is <region> doing at the start?'). "
)


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


# ------------------------------------------------------------------------------------------------------- Analyzer
def analyzer_messages(caption: str) -> list[dict]:
    return [{"role": "system", "content": ANALYZER_SYSTEM}, _user(f"Caption: {caption}")]


def validate_nouns(value: Any, max_objects: int) -> list[str]:
    """A list of distinct short noun phrases (strings, or dicts with 'noun'); the first `max_objects` kept."""
    objects = require_dict(value, ("objects",))["objects"]
    if not isinstance(objects, list):
        raise ValueError(f"'objects' must be a list, got {type(objects).__name__}")
    nouns: list[str] = []
    for item in objects:
        noun = item.get("noun") if isinstance(item, dict) else item
        noun = require_text(noun, "object", 60).strip(" .").lower()
        if not re.fullmatch(r"[\w][\w' -]*", noun) or len(noun.split()) > 4:
            raise ValueError(f"{noun!r} is not a short noun phrase (at most 4 words)")
        if noun not in nouns:
            nouns.append(noun)
    return nouns[:max_objects]


# ------------------------------------------------------------------------------------------------------ Annotator
def annotator_messages(caption: str, noun: str, frames: Sequence[Any], times: Sequence[float | None]) -> list[dict]:
    """One request per object: the caption for context, the frames (with their times), the object's name."""
    content: list[dict] = [{"type": "text", "text": f"Video caption (context only): {caption}\n"
                                                    f"The {len(frames)} frames follow in time order."}]
    for frame, t in zip(frames, times):
        content.append({"type": "text", "text": f"Frame at {t:.1f} s:" if t is not None else "Frame:"})
        content.append({"type": "image_url", "image_url": {"url": image_data_url(frame)}})
    content.append({"type": "text", "text": f"Describe the object: {noun}"})
    return [{"role": "system", "content": ANNOTATOR_SYSTEM}, {"role": "user", "content": content}]


def validate_annotation(value: Any) -> dict:
    value = require_dict(value, ("dynamics", "appearance"))
    return {"dynamics": require_text(value["dynamics"], "dynamics"),
            "appearance": require_text(value["appearance"], "appearance")}


# ------------------------------------------------------------------------------------------------------- Reviewer
def reviewer_messages(noun: str, annotation: dict, region_caption: str) -> list[dict]:
    text = (f"Annotation\n- object: {noun}\n- appearance: {annotation['appearance']}\n"
            f"- dynamics: {annotation['dynamics']}\n\nDescription of the masked object:\n{region_caption}")
    return [{"role": "system", "content": REVIEWER_SYSTEM}, _user(text)]


def validate_review(value: Any) -> dict:
    value = require_dict(value, ("match", "reason"))
    match = value["match"]
    if isinstance(match, str) and match.strip().lower() in ("true", "yes", "false", "no"):
        match = match.strip().lower() in ("true", "yes")
    if not isinstance(match, bool):
        raise ValueError(f"'match' must be true or false, got {value['match']!r}")
    return {"match": match, "reason": require_text(value["reason"], "reason", 1000)}


# -------------------------------------------------------------------------------------------------------- Refiner
def refiner_messages(noun: str, annotation: dict, qa: int) -> list[dict]:
    system = REFINER_SYSTEM.format(qa_rule=QA_RULE.format(n=qa) if qa else "")
    text = f"Object: {noun}\nAppearance: {annotation['appearance']}\nDynamics: {annotation['dynamics']}"
    return [{"role": "system", "content": system}, _user(text)]


def _validate_question(item: Any, k: int) -> dict:
    item = require_dict(item, ("question", "options", "answer"))
    question = require_text(item["question"], f"qa[{k}].question", 500)
    if question.count(REGION) != 1:
        raise ValueError(f"qa[{k}].question must name the object as {REGION} exactly once: {question!r}")
    options = item["options"]
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"qa[{k}].options must be a list of 2-{len(LETTERS)} strings")
    options = [require_text(o, f"qa[{k}].options", 300) for o in options]
    options = [re.sub(r"^\(?[A-F][).:]\s+", "", o) for o in options]  # "(A) cat" -> "cat"
    if len({o.lower() for o in options}) != len(options):
        raise ValueError(f"qa[{k}].options are not distinct: {options}")
    answer = str(item["answer"]).strip()
    letter = re.fullmatch(r"\(?([A-F])\)?[.:]?", answer)
    if letter and LETTERS.index(letter.group(1)) < len(options):
        index = LETTERS.index(letter.group(1))
    elif answer.lower() in [o.lower() for o in options]:
        index = [o.lower() for o in options].index(answer.lower())
    else:
        raise ValueError(f"qa[{k}].answer {answer!r} is neither an option letter nor an option")
    return {"question": question, "options": options, "answer": LETTERS[index]}


def validate_refined(value: Any, qa: int) -> dict:
    value = require_dict(value, ("detailed_caption", "short_caption"))
    out: dict[str, Any] = {
        "detailed_caption": require_text(value["detailed_caption"], "detailed_caption"),
        "short_caption": require_text(value["short_caption"], "short_caption", 500),
    }
    for name in ("detailed_caption", "short_caption"):
        if REGION in out[name]:
            raise ValueError(f"{name} must not contain {REGION}")
    if qa:
        items = value.get("qa")
        if not isinstance(items, list) or len(items) < qa:
            raise ValueError(f"'qa' must be a list of {qa} question(s)")
        out["qa"] = [_validate_question(item, k) for k, item in enumerate(items[:qa])]
    else:
        out["qa"] = []
    return out
