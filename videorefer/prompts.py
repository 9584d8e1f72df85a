"""The prompt grammar both model families share: one home for each prompt, tag and label.

* Objects are named `<object0>`, `<object1>`, ... in questions and answers (`OBJECT_TAG`).
* `<region>` (`REGION_PLACEHOLDER`) marks where an object's visual tokens go; each family expands it its own way
  (VideoRefer-7B: one `<region>` token per object; VL3: `[` + `<REGION>` x n + `]` per mask).
* `<video>` (`VIDEO_PLACEHOLDER`) marks where the video goes in the first user turn.
* `DESCRIBE_PROMPT` is the official captioning / Bench-D question; the demo's Describe button, `/describe`, Bench-D and
  the data engine's captioner all ask exactly this.
* `IGNORE_LABEL` is the label of tokens that do not count in the loss (transformers' and the official code's -100).
* `check_object_tags` is the one check that a text names only existing objects; `region_question` and
  `region_conversation` write each object's `<region>` into a question that names objects by tag.
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = [
    "OBJECT_TAG", "REGION_PLACEHOLDER", "VIDEO_PLACEHOLDER", "DESCRIBE_PROMPT",
    "DESCRIBE_PROMPT_VL3", "IGNORE_LABEL", "object_tag",
    "UnknownObjectError", "check_object_tags", "check_question", "region_question", "region_conversation", "describe_question",
    "SHORT_DESCRIBE_PROMPT",
]

OBJECT_TAG = re.compile(r"<object(\d+)>")
REGION_PLACEHOLDER = "<region>"
VIDEO_PLACEHOLDER = "<video>"
DESCRIBE_PROMPT = "Please give a detailed description of the highlighted object [<region>] in the video."
# VideoRefer-VL3's own captioning / Bench-D question (its official evaluation puts the video after the text).
DESCRIBE_PROMPT_VL3 = "Please describe in detail the marked object <region> in the video.\n<video>"
# The short-caption variant the data engine trains on (VideoRefer-700K has detailed and short captions).
SHORT_DESCRIBE_PROMPT = DESCRIBE_PROMPT.replace("a detailed description", "a short description")
IGNORE_LABEL = -100


def object_tag(index: int) -> str:
    """`<objectK>`: how prompts and answers name object K."""
    return f"<object{index}>"


def describe_question(index: int) -> str:
    """`DESCRIBE_PROMPT` about `<objectK>` in a conversation about several objects (the demo's Describe button):
    the same words, the object named by its tag where `DESCRIBE_PROMPT` has its region placeholder."""
    return DESCRIBE_PROMPT.replace(f"[{REGION_PLACEHOLDER}]", object_tag(index))


class UnknownObjectError(ValueError):
    """A text names `<objectK>` but there are fewer than K + 1 objects."""

    def __init__(self, index: int, num_objects: int):
        self.index, self.num_objects = index, num_objects
        have = f"<object0>..<object{num_objects - 1}>" if num_objects else "no objects"
        super().__init__(f"the question refers to <object{index}> but there are only {have}")


def check_object_tags(text: str, num_objects: int) -> set[int]:
    """The K of every `<objectK>` in `text`; raises `UnknownObjectError` for the first one that is not an object."""
    named = {int(k) for k in OBJECT_TAG.findall(text)}
    unknown = sorted(k for k in named if k >= num_objects)
    if unknown:
        raise UnknownObjectError(unknown[0], num_objects)
    return named


def _check_not_empty(question: str) -> None:
    if not question or not question.strip():
        raise ValueError("the question is empty")


def check_question(question: str, num_objects: int) -> set[int]:
    """A question must not be empty and may name only `<object0>`..`<object{num_objects-1}>`; returns the named K."""
    _check_not_empty(question)
    return check_object_tags(question, num_objects)


def region_question(question: str, num_objects: int) -> str:
    """Write each object's region placeholder into a question that names objects as `<object0>`, `<object1>`, ...

    A question that already holds `<region>` is returned unchanged. Otherwise the first mention of each
    `<objectK>` becomes `<objectK> [<region>]`; objects the question does not name are listed first, as in the
    official examples ("There are two objects: <object0> [<region>], <object1> [<region>]. ...").
    """
    _check_not_empty(question)
    if REGION_PLACEHOLDER in question:
        return question  # already laid out (e.g. Bench-Q items, whose object numbers need not start at 0)
    named = check_object_tags(question, num_objects)
    if num_objects == 0:
        return question
    if named == set(range(num_objects)):
        seen: set[int] = set()

        def first_mention(match: re.Match) -> str:
            k = int(match.group(1))
            if k in seen:
                return match.group(0)
            seen.add(k)
            return f"{match.group(0)} [{REGION_PLACEHOLDER}]"

        return OBJECT_TAG.sub(first_mention, question)
    listing = ", ".join(f"{object_tag(k)} [{REGION_PLACEHOLDER}]" for k in range(num_objects))
    lead = "There is one object" if num_objects == 1 else f"There are {num_objects} objects"
    return f"{lead}: {listing}. {question}"


def region_conversation(
    question: str, history: Sequence[tuple[str, str]] | None, num_objects: int
) -> tuple[str, list[tuple[str, str]]]:
    """Lay out a conversation's region placeholders once: in the first question of the conversation.

    A follow-up repeats the earlier turns exactly as they were first asked (so their prompt prefix, and its key/value
    cache, stay the same) and keeps the new question as written; it may still name objects as `<objectK>`.
    """
    history = list(history or [])
    if not history:
        return region_question(question, num_objects), history
    _check_not_empty(question)
    check_object_tags(question, num_objects)
    first, answer = history[0]
    history[0] = (region_question(first, num_objects), answer)
    return question, history
