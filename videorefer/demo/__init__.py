"""The Gradio demo's logic (`app.py` at the top level only lays out the page and wires events).

- `limits`: what a request may hold (formats, size, duration, resolution, question length) and `DemoError`.
- `backend`: settings from flags / environment, loading the models once (tiny mode, `spaces.GPU`).
- `state`: the per-visitor state (video, decoded frames, objects, chat).
- `overlay`: masks, clicks and boxes drawn over a frame; coloured `<objectN>` tags.
- `service`: the page's logic (open a video, click, brush, track, ask).
- `endpoints`: the `/segment`, `/track`, `/describe`, `/ask` API functions.
- `handlers`: the gradio event handlers around `service` and `endpoints`.
"""
