"""The prompt grammar both model families share: one home for each prompt, tag and label.

* Objects are named `<object0>`, `<object1>`, ... in questions and answers (`OBJECT_TAG`).
* `<region>` (`REGION_PLACEHOLDER`) marks where an object's visual tokens go; each family expands it its own way
  (VideoRefer-7B: one `<region>` token per object; VL3: `[` + `<REGION>` x n + `]` per mask).
* `<video>` (`VIDEO_PLACEHOLDER`) marks where the video goes in the first user turn.
* `DESCRIBE_PROMPT` is the official captioning / Bench-D question; the demo's Describe button, `/describe`, Bench-D and
  the data engine's captioner all ask exactly this.
* `IGNORE_LABEL` is the label of tokens that do not count in the loss (transformers' and the official code's -100).
"""

from __future__ import annotations

import re

__all__ = ["OBJECT_TAG", "REGION_PLACEHOLDER", "VIDEO_PLACEHOLDER", "DESCRIBE_PROMPT", "IGNORE_LABEL", "object_tag"]

OBJECT_TAG = re.compile(r"<object(\d+)>")
REGION_PLACEHOLDER = "<region>"
VIDEO_PLACEHOLDER = "<video>"
DESCRIBE_PROMPT = "Please give a detailed description of the highlighted object [<region>] in the video."
IGNORE_LABEL = -100


def object_tag(index: int) -> str:
    """`<objectK>`: how prompts and answers name object K."""
    return f"<object{index}>"
