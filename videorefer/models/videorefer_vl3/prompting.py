"""VL3's prompt text: the official chat format (no system message) and its region layout.

* A video is written `Time 0.3s:<image>,Time 1.3s:<image>,...\\n` (one `<image>` per frame, time rounded to 0.1 s as
  Python's `round`), a still image `<image>\\n`; it goes where the first user turn has `<video>` (text pieces
  stripped, as the official `mm_infer` splits them), else before that turn's text.
* Each `<region>` becomes `[` + `<REGION>` x n_k + `]`, mask k in order over the whole conversation; an object on
  several frames is written with one `<region>` per mask: `<object1><region><region>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from videorefer.prompts import check_question, REGION_PLACEHOLDER, VIDEO_PLACEHOLDER, object_tag

from .configuration import VL3_IMAGE_TOKEN, VL3_REGION_TOKEN

__all__ = [
    "VL3Layout",
    "region_question",
    "region_conversation",
    "render_prompt",
    "render_conversation",
    "expand_regions",
    "check_region_placeholders",
    "training_turns",
    "accepted_placeholder_counts",
]

# v1's bracketed placeholder (`[<region>]`, e.g. in videorefer.prompts.DESCRIBE_PROMPT): VL3 brings its own brackets.
_BRACKETED_REGION = re.compile(r"\[\s*" + re.escape(REGION_PLACEHOLDER) + r"\s*\]")


@dataclass
class VL3Layout:
    """What a request's text needs from its visual side, so follow-ups rebuild ids without the pixels.

    `frame_tokens[f]`: `<image>` ids of frame f (a still image: one entry); `timestamps[f]` in seconds (None for a
    still image); `tokens_per_mask[k]`: `<REGION>` ids of mask k; `masks_per_object[o]`: masks of object o.
    """

    frame_tokens: list[int]
    timestamps: list[float] | None
    tokens_per_mask: list[int]
    masks_per_object: list[int]

    @property
    def is_image(self) -> bool:
        return self.timestamps is None


def region_question(question: str, masks_per_object: Sequence[int]) -> str:
    """Lay a plain question naming `<object0>`, `<object1>`, ... out in the official VL3 format.

    A question that already holds `<region>` placeholders is returned unchanged (its `<objectN>` are then only
    names: Bench-Q items number objects from any N). Otherwise the objects are listed first, each with one
    `<region>` per mask, as the official examples write them: "There are 2 objects in the video:
    <object0><region>, <object1><region><region>. <question>".
    """
    if REGION_PLACEHOLDER in question:
        return _per_mask_placeholders(question, masks_per_object)
    check_question(question, len(masks_per_object))
    if not masks_per_object:
        return question
    listing = ", ".join(object_tag(k) + REGION_PLACEHOLDER * int(n) for k, n in enumerate(masks_per_object))
    lead = "There is 1 object" if len(masks_per_object) == 1 else f"There are {len(masks_per_object)} objects"
    return f"{lead} in the video: {listing}. {question.strip()}"


def _per_mask_placeholders(question: str, masks_per_object: Sequence[int]) -> str:
    """A question laid out with one `<region>` per object (e.g. `DESCRIBE_PROMPT`) while some object has masks on
    several frames: the object's placeholder stands for all its masks, in order. Any other count is left for
    `check_region_placeholders` to refuse."""
    question = _BRACKETED_REGION.sub(REGION_PLACEHOLDER, question)
    num_masks = sum(int(n) for n in masks_per_object)
    if question.count(REGION_PLACEHOLDER) != len(masks_per_object) or num_masks == len(masks_per_object):
        return question
    blocks = iter(REGION_PLACEHOLDER * int(n) for n in masks_per_object)
    return re.sub(re.escape(REGION_PLACEHOLDER), lambda _: next(blocks), question)


def region_conversation(
    question: str, history: Sequence[tuple[str, str]] | None, masks_per_object: Sequence[int]
) -> tuple[str, list[tuple[str, str]]]:
    """Regions are laid out once, in the first question of a conversation (follow-ups keep their prefix unchanged)."""
    history = list(history or [])
    if not history:
        return region_question(question, masks_per_object), history
    check_question(question, len(masks_per_object))
    first, answer = history[0]
    history[0] = (region_question(first, masks_per_object), answer)
    return question, history


def accepted_placeholder_counts(masks_per_object: Sequence[int]) -> tuple[int, ...]:
    """`<region>` counts a written conversation may hold: one per mask (the official VL3 data), or one per object
    (the VideoRefer-700K data), each then standing for all of that object's masks."""
    return tuple(sorted({len(masks_per_object), sum(int(n) for n in masks_per_object)}))


def training_turns(
    turns: Sequence[tuple[str, str]], masks_per_object: Sequence[int]
) -> list[tuple[str, str]]:
    """A training conversation's (user, assistant) turns with one `<region>` per mask.

    Placeholders already written (in any turn) are kept where they are; written one per object (700K data), each
    becomes its object's masks' placeholders, in order across turns. A conversation without any is laid out as
    inference lays out a question (`region_question` on the first turn).
    """
    turns = [(_BRACKETED_REGION.sub(REGION_PLACEHOLDER, user), answer) for user, answer in turns]
    found = sum(user.count(REGION_PLACEHOLDER) for user, _ in turns)
    if found == 0:
        return [(region_question(turns[0][0], masks_per_object), turns[0][1]), *turns[1:]] if turns else []
    if found != len(masks_per_object) or found == sum(int(n) for n in masks_per_object):
        return turns  # one per mask already (or a wrong count, which `check_region_placeholders` refuses)
    blocks = iter(REGION_PLACEHOLDER * int(n) for n in masks_per_object)
    pattern = re.escape(REGION_PLACEHOLDER)
    return [(re.sub(pattern, lambda _: next(blocks), user), answer) for user, answer in turns]


def check_region_placeholders(texts: Sequence[str], num_masks: int) -> list[str]:
    """`texts` with v1-style `[<region>]` read as `<region>`; refuses a placeholder count other than `num_masks`."""
    texts = [_BRACKETED_REGION.sub(REGION_PLACEHOLDER, text) for text in texts]
    found = sum(text.count(REGION_PLACEHOLDER) for text in texts)
    if found != num_masks:
        raise ValueError(
            f"the question has {found} {REGION_PLACEHOLDER} placeholders but {num_masks} masks were given "
            "(one placeholder per mask: an object on several frames needs one per frame)"
        )
    return texts


def expand_regions(texts: Sequence[str], tokens_per_mask: Sequence[int]) -> list[str]:
    """Replace the `<region>`s of `texts` (in order, across texts) by `[` + `<REGION>` x n_k + `]`."""
    texts = check_region_placeholders(texts, len(tokens_per_mask))
    blocks = iter("[" + VL3_REGION_TOKEN * int(n) + "]" for n in tokens_per_mask)
    return [re.sub(re.escape(REGION_PLACEHOLDER), lambda _: next(blocks), text) for text in texts]


def _visual_text(layout: VL3Layout) -> str:
    if layout.is_image:
        return VL3_IMAGE_TOKEN + "\n"
    stamps = [f"Time {round(float(t), 1)}s:{VL3_IMAGE_TOKEN}" for t in layout.timestamps]
    return ",".join(stamps) + "\n"


def _first_user_content(text: str, visual: str) -> str:
    if VIDEO_PLACEHOLDER not in text:
        text = VIDEO_PLACEHOLDER + text
    if text.count(VIDEO_PLACEHOLDER) > 1:
        count = text.count(VIDEO_PLACEHOLDER)
        raise ValueError(f"the question holds {count} {VIDEO_PLACEHOLDER} placeholders; one video per request")
    before, after = (piece.strip() for piece in text.split(VIDEO_PLACEHOLDER))
    return before + visual + after


def render_prompt(question: str, history: Sequence[tuple[str, str]], layout: VL3Layout) -> str:
    """The chat text (regions expanded, one `<image>` per frame) of `history` turns, then `question` and the
    assistant's generation prompt."""
    return render_conversation([*history, (question, None)], layout, add_generation_prompt=True)


def render_conversation(
    turns: Sequence[tuple[str, str | None]], layout: VL3Layout, add_generation_prompt: bool = False
) -> str:
    """The chat text of (user, assistant or None) turns.

    Assistant turns are written as assistant turns (the official `mm_infer` writes every message of a list as a user
    turn, a bug we do not copy; its training data uses this layout).
    """
    users = expand_regions([user for user, _ in turns], layout.tokens_per_mask)
    parts = []
    for k, (user, (_, answer)) in enumerate(zip(users, turns)):
        content = _first_user_content(user, _visual_text(layout)) if k == 0 else user.strip()
        parts.append(f"<|im_start|>user\n{content}<|im_end|>\n")
        if answer is not None:
            parts.append(f"<|im_start|>assistant\n{answer}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)
