"""The Gradio demo's logic (`app.py` at the top level only lays out the page and wires events).

- `limits`: what a request may hold (formats, size, duration, resolution, question length) and `DemoError`.
- `backend`: settings from flags / environment, loading the models once (tiny mode).
- `state`: the per-visitor state (video, decoded frames, objects, chat).
- `overlay`: masks, clicks and boxes drawn over a frame; coloured `<objectN>` tags.
- `service`: the page's logic (open a video, click, brush, track, ask).
- `endpoints`: the `/segment`, `/track`, `/describe`, `/ask` API functions.
- `handlers`: the gradio event handlers around `service` and `endpoints`.
- `decode`: an upload opened and decoded once (`VideoFile`), handed on to SAM 2 and the LLM.
- `chat`: the history's `<objectK>` tags renumbered when an object is removed.
- `playback`: the tracked-mask mp4, the saved-regions download, restoring objects from a regions file.
- `sessions`: what is stopped and freed when a visitor leaves.
- `zerogpu`: Spaces / ZeroGPU (the `gpu_duration` policy, the `gpu` decorator, pickling the models by name).
- `page`: what the page shows around the handlers (hint, help, the examples' one-click questions, step statuses, CSS).
- `space`: `python -m videorefer.demo.space OUT_DIR` writes a Hugging Face Space repository.
"""
