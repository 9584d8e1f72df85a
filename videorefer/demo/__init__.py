"""The Gradio demo's logic (`app.py` at the top level only lays out the page and wires events).

- `limits`: every bound on what a request may hold (`Limits`: video, text, masks, JSON, time, memory), the text checks
  (question, history, names, reserved chat tokens) and `DemoError`.
- `validate`: structured inputs checked before anything is allocated (JSON size and depth, regions, clicks).
- `budget`: time budgets per request (decoding, segmentation, tracking) that also stop abandoned work.
- `errors`: what a visitor sees of an error (`user_errors`; never a server path).
- `backend`: settings from flags / environment, loading the models once (tiny mode).
- `state`: the per-visitor state (video, decoded frames, objects, chat).
- `overlay`: masks, clicks and boxes drawn over a frame; coloured `<objectN>` tags.
- `service`: the page's logic (open a video, click, brush, track, ask).
- `endpoints`: the `/segment`, `/track`, `/describe`, `/ask` API functions.
- `handlers`: the gradio event handlers around `service` and `endpoints`.
- `decode`: an upload opened and decoded once (`VideoFile`), handed on to SAM 2 and the LLM.
- `chat`: the history's `<objectK>` tags renumbered when an object is removed.
- `playback`: the tracked-mask mp4, the saved-regions download, restoring objects from a regions file.
- `sessions`: what each visitor holds (bounded in bytes), and what is stopped and freed when they leave or go idle.
- `zerogpu`: Spaces / ZeroGPU (the `gpu_duration` policy, the `gpu` decorator, pickling the models by name).
- `page`: what the page shows around the handlers (hint, help, the examples' one-click questions, step statuses, CSS).
- `space`: `python -m videorefer.demo.space OUT_DIR` writes a Hugging Face Space repository.
"""
