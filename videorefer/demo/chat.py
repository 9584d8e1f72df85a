"""Keeping the chat true when objects are renumbered.

Objects are named by position (`<objectK>` is the K-th object). Removing `<object0>` moves every later object up one
number, so the stored conversation is rewritten the same way: `<object2>` becomes `<object1>`, and mentions of the
removed object become its name in words (it no longer has a tag, and its mask no longer reaches the model). Renaming
changes no tag: names are shown next to the tags, never sent to the model.
"""

from __future__ import annotations

from videorefer.prompts import OBJECT_TAG

from .state import ChatTurn

REMOVED = "[removed object: {name}]"


def renumber_tags(text: str, removed: int, removed_name: str) -> str:
    """`text` with `<objectK>` for K > `removed` renumbered to K-1 and `<object{removed}>` spelled out."""

    def replace(match) -> str:
        k = int(match.group(1))
        if k == removed:
            return REMOVED.format(name=removed_name)
        return f"<object{k - 1}>" if k > removed else match.group(0)

    return OBJECT_TAG.sub(replace, text)


def renumber_chat(chat: list[ChatTurn], removed: int, removed_name: str) -> None:
    """Rewrite every turn (question as sent, as shown, and answer) after object `removed` was removed."""
    for turn in chat:
        turn.question = renumber_tags(turn.question, removed, removed_name)
        turn.answer = renumber_tags(turn.answer, removed, removed_name)
        if turn.shown is not None:
            turn.shown = renumber_tags(turn.shown, removed, removed_name)
