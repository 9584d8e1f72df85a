"""What the page shows around the handlers: the short hint and the folded help, the examples' one-click questions,
the status a long step shows while it runs, and the page's CSS. `app.py` lays these out; no model logic here.

- `QUICK_STARTS` / `quick_starts(folder)`: one `QuickStart` per example video whose regions file has a `quick_start`
  entry (title and question): one click loads the video, points at its saved objects and asks the question.
- `with_status(fn, desc)`: the same event handler, saying what it is doing (`gr.Progress`) while it runs.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from videorefer.prompts import OBJECT_TAG

from .service import EXAMPLES_DIR
from .zerogpu import on_zero_gpu


HINT = ("**Try an example**, or upload a video → **click the object** on the frame → **ask** about `<object0>` in the "
        "chat (help: *How to use*).")
INSTRUCTIONS = """
1. **Upload a video** (or a photo) or pick an example. Move the slider to any frame.
2. **Point at an object**: click on the frame (positive / negative clicks or two box corners), or paint it in the
   *Brush* tab, or type its name and press **Find** (e.g. *the rabbit*, *every car*). Each object gets a colour and a
   tag: `<object0>`, `<object1>`, … Use **New object** for the next one.
3. **Track** the objects through the video (optional): the tracked masks play in *Tracked video and saved regions*;
   download the video or the objects (a regions file you can upload later to restore them). Then **ask** about the
   objects in the chat, e.g. *What is `<object0>` doing?* Removing an object renumbers the later ones, in the chat too.
"""

# Frame and chat side by side from 1024 px wide; one column below (gradio wraps the row); nothing wider than the
# screen on a phone. The frame is capped to the viewport's height so that it and the chat's question box fit in one
# view on a laptop (1366×768).
CSS = """
.tiny-banner {background:#fff3cd;border:2px solid #e0a800;border-radius:8px;padding:0 10px;}
.tiny-banner p {margin:0; font-size:0.85rem;}
#title h1 {margin:0 !important; font-size:1.3rem !important;}
#model-card *, #hint *, #quick-starts-label * {font-size:0.8rem !important; line-height:1.35 !important;}
#video-upload {max-height:120px;}
#video-upload [data-testid="upload-text"] {font-size:0.85rem; line-height:1.25; padding-top:14px;}
#video-upload [data-testid="upload-icon"] {height:1.2em; width:1.2em;}
#frame img {max-height:calc(100vh - 380px); min-height:160px; width:auto; max-width:100%; margin:auto;}
#chat {height:max(240px, calc(100vh - 330px)) !important;}
.gradio-container {max-width:100% !important;}
@media (max-width: 640px) {
  .gradio-container {padding-left:4px !important; padding-right:4px !important;}
  #frame img {max-height:none;}
  #chat {height:360px !important;}
}
"""


@dataclass(frozen=True)
class QuickStart:
    """An example video with a ready question about its saved objects."""

    video: str  # path of the example video
    title: str  # "Big Buck Bunny"
    question: str  # "What is <object0> doing?"
    names: tuple[str, ...]  # the saved objects' names, in order: <object0>, <object1>, ...

    @property
    def label(self) -> str:
        """The button's text, the tags written as the objects' names: 'Big Buck Bunny: What is the bunny doing?'"""
        def name(match) -> str:
            k = int(match.group(1))
            return f"the {self.names[k].replace('_', ' ')}" if k < len(self.names) else match.group(0)

        return f"▶ {self.title}: {OBJECT_TAG.sub(name, self.question)}"

    def fill(self) -> tuple[str, str]:
        """(video, question) for the upload box and the question box."""
        return self.video, self.question


def quick_starts(folder: Path = EXAMPLES_DIR) -> list[QuickStart]:
    """The examples' one-click questions: every `*.regions.json` with a `quick_start` entry and its video."""
    found = []
    for path in sorted(folder.glob("*.regions.json")) if folder.is_dir() else []:
        document = json.loads(path.read_text())
        entry, video = document.get("quick_start"), folder / document.get("video", "")
        if entry and video.is_file():
            names = tuple(obj.get("name", f"object {k}") for k, obj in enumerate(document.get("objects", [])))
            found.append(QuickStart(str(video), entry["title"], entry["question"], names))
    return found


def status(desc: str, step: tuple[int, int] | None = None) -> str:
    """What a long step says while it runs ('Step 2 of 3: segmenting…' within a chain of steps); on ZeroGPU it may
    first wait for a GPU to be lent."""
    text = f"Step {step[0]} of {step[1]}: {desc[:1].lower()}{desc[1:]}" if step else desc
    return f"{text} (waiting for a GPU first)…" if on_zero_gpu() else f"{text}…"


def with_status(fn: Callable, desc: str, step: tuple[int, int] | None = None) -> Callable:
    """`fn` (an event handler, a function or a generator) that first shows `desc` on its outputs (gradio's progress
    overlay, beside the queue position and the elapsed time) and then runs as before. `step` = (k, n): step k of a
    chain of n, shown as such and as the bar's level. Gradio passes the progress tracker as one more argument, after
    `fn`'s own (found from the signature given here)."""
    signature = inspect.signature(fn)
    tracker = inspect.Parameter("status_progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def split(args: tuple) -> tuple:
        *own, progress = args
        level = (step[0] - 1) / step[1] if step else 0.0
        progress(level, desc=status(desc, step))  # gradio shows a description only beside a progress level
        return own

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            yield from fn(*split(args))
    else:
        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*split(args))

    wrapper.__signature__ = signature.replace(parameters=[*params, tracker])
    return wrapper


def unless_stopped(answer: Callable) -> Callable:
    """The answer step at the end of a chain of steps (an example's one click), `answer(..., state)` streaming (chat,
    question box): it does not start when Stop was pressed during the earlier steps (the state's stop event is set;
    the answer itself clears it when it starts). Chat and question box then stay as they are."""
    @functools.wraps(answer)
    def wrapper(*args):
        state = args[-1]
        if state is not None and state.stop_event.is_set():
            yield gr.skip(), gr.skip()
            return
        yield from answer(*args)

    return wrapper
