"""VideoRefer demo: point at objects in a video, track them, and chat about them.

    python app.py                 # DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B + SAM 2.1 + Grounding DINO from the Hub
    python app.py --model DAMO-NLP-SG/VideoRefer-7B   # any checkpoint of either family (a Hub id or a folder)
    python app.py --tiny          # random tiny models built in code (no download; answers are gibberish): VL3
    python app.py --tiny v1       # ... of the VideoRefer-7B family
    python app.py --server http://127.0.0.1:8000   # answers from a VideoRefer server (python -m videorefer.serve)
    python app.py --engine vllm   # answers from vLLM in this process (the vLLM venv)
    python app.py --help          # model id, quantization, SAM 2 checkpoint, device, port, limits

This file only lays out the page and wires events; the logic lives in `videorefer.demo`.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from videorefer.demo.zerogpu import import_spaces_first  # noqa: E402

import_spaces_first()  # ZeroGPU: `spaces` before anything imports torch
import gradio as gr  # noqa: E402

from videorefer.demo.backend import Backend, Settings, load_backend, parse_settings  # noqa: E402
from videorefer.demo.limits import IMAGE_SUFFIXES  # noqa: E402
from videorefer.demo.handlers import CLICK_LABELS, MODE_LABELS, DemoHandlers  # noqa: E402
from videorefer.demo.overlay import legend_html  # noqa: E402
from videorefer.demo.page import CSS, HINT, INSTRUCTIONS, quick_starts, unless_stopped, with_status  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"


def build_demo(backend: Backend) -> gr.Blocks:
    """The page: title and model; the video and the examples' one-click questions; the frame (left) beside the
    objects and the chat (right), one column on a phone; folded help, tracked video and downloads; hidden API
    endpoints."""
    h = DemoHandlers(backend)
    settings = backend.settings
    gpu, answer = backend.concurrency()  # answering has its own group when a server or vLLM batches answers
    with gr.Blocks(title="VideoRefer demo") as demo:
        state = gr.State(None, time_to_live=3600, delete_callback=h.release)
        with gr.Row(equal_height=True):
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("# VideoRefer — ask about any object in a video", elem_id="title")
            with gr.Column(scale=1, min_width=300):
                gr.Markdown(backend.model_card(), elem_id="model-card")
        if backend.tiny:
            gr.Markdown(f"⚠️ **Tiny mode:** {backend.label}. Use it to try the interface.", elem_classes="tiny-banner",
                        elem_id="tiny-banner")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):  # the video and its frame
                with gr.Row(equal_height=True):
                    video = gr.File(label="Video or image", file_types=[".mp4", ".webm", ".mov", ".avi", ".gif",
                                                                        *IMAGE_SUFFIXES], type="filepath",
                                    elem_id="video-upload", height=100, scale=2, min_width=200)
                    with gr.Column(scale=3, min_width=240, elem_id="quick-starts"):
                        gr.Markdown("**Examples**: one click to an answer", elem_id="quick-starts-label")
                        starts = [(start, gr.Button(start.label, size="sm", elem_classes="quick-start"))
                                  for start in quick_starts()]
                gr.Markdown(HINT, elem_id="hint")
                with gr.Tabs():
                    with gr.Tab("Click", id="click-tab"):
                        frame = gr.Image(label="Frame (click on an object)", type="numpy", interactive=False,
                                         elem_id="frame", buttons=[], show_label=False)
                    with gr.Tab("Brush", id="brush-tab"):
                        editor = gr.ImageEditor(label="Paint over the object", type="numpy", elem_id="brush",
                                                brush=gr.Brush(colors=["#ff3366"], color_mode="fixed"),
                                                transforms=(), layers=False)
                        with gr.Row():
                            refine = gr.Checkbox(value=True, label="Let SAM 2 refine the painted mask")
                            use_brush = gr.Button("Use painted mask")
                caption = gr.Markdown(elem_id="frame-caption")
                slider = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="frame-slider")
                with gr.Row():
                    click_mode = gr.Radio(list(CLICK_LABELS), value="Positive click", label="A click adds",
                                          elem_id="click-mode", scale=3, min_width=200)
                    with gr.Column(scale=2, min_width=160):
                        objects = gr.Dropdown(choices=[], label="Object being edited", elem_id="object-select")
                        with gr.Row():
                            new = gr.Button("New object", size="sm", elem_id="new-object", min_width=80)
                            remove = gr.Button("Remove object", size="sm", variant="stop", min_width=80)
                with gr.Row():
                    clear = gr.Button("Clear clicks on this frame", size="sm", min_width=120)
                    track = gr.Button("Track objects through the video", variant="primary", size="sm",
                                      elem_id="track", min_width=160)
            with gr.Column(scale=2, min_width=300):  # the objects and the chat about them
                legend = gr.HTML(legend_html([], [], None), elem_id="legend")
                chat = gr.Chatbot(label="Chat", elem_id="chat", height=360)
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask about <object0>, <object1>, …", show_label=False, scale=5,
                                          elem_id="question", min_width=220)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send", min_width=60)
                    stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop", min_width=60)
                with gr.Row():
                    describe = gr.Button("Describe the selected object", size="sm", min_width=120)
                    relate = gr.Button("How do these objects relate?", size="sm", min_width=120)
                    clear_chat = gr.Button("Clear chat", size="sm", min_width=80)
        with gr.Row():  # below the frame and the chat (on a phone: after the chat)
            with gr.Column(scale=3, min_width=300):
                with gr.Row(visible=backend.finder is not None):  # Find by name (Grounding DINO + SAM 2.1)
                    find_text = gr.Textbox(label="Find by name", placeholder="the rabbit, every car", scale=3,
                                           elem_id="find-text", min_width=160)
                    find_threshold = gr.Slider(0, 1, value=settings.find_threshold, step=0.01, scale=2,
                                               label="Detection threshold", elem_id="find-threshold", min_width=160)
                    find_track = gr.Checkbox(value=False, label="Track them", scale=1, elem_id="find-track",
                                             min_width=100)
                    find = gr.Button("Find", scale=1, elem_id="find", min_width=80)
                with gr.Accordion("Tracked video and saved regions", open=False, elem_id="tracked-panel") as saved_box:
                    tracked = gr.Video(label="Tracked masks", interactive=False, elem_id="tracked-video")
                    with gr.Row():
                        video_file = gr.File(label="Download the video (mp4)", elem_id="tracked-download")
                        regions_file = gr.File(label="Download the regions (JSON)", elem_id="regions-download")
                        regions_upload = gr.File(label="Restore objects from a regions file", file_types=[".json"],
                                                 type="filepath", elem_id="regions-upload")
                    save = gr.Button("Save the objects as a regions file", size="sm", elem_id="save-regions")
                with gr.Accordion("How to use", open=False, elem_id="help"):
                    gr.Markdown(INSTRUCTIONS)
                    gr.Markdown(settings.limits.describe(), elem_id="limits")
            with gr.Column(scale=2, min_width=300):
                with gr.Accordion("More: saved objects, renaming, frames the model sees", open=False):
                    use_saved = gr.Button("Use saved objects (examples)", size="sm", elem_id="use-saved")
                    with gr.Row():
                        name = gr.Textbox(label="Name", scale=3, min_width=140)
                        rename = gr.Button("Rename", size="sm", scale=1, min_width=80)
                    mode = gr.Radio(list(MODE_LABELS), value=next(iter(MODE_LABELS)), label="Frames the model sees",
                                    info=f"Multi-frame: {backend.region_policy()}.", elem_id="frame-mode")

        _api(h, gpu, answer)  # first, so that the API names are not taken by the page's own (private) events
        panel = [frame, caption, legend, objects, name]
        load = with_status(h.load, "Decoding the video")
        loaded = [state, slider, editor, chat, *panel]
        for trigger in (video.upload, video.clear):  # the examples below set the video themselves
            trigger(load, [video, state], loaded, api_visibility="private")
        decode_step = with_status(h.load, "Decoding the video", (1, 3))  # an example's one click: three steps
        saved_step = with_status(h.add_saved_objects, "Segmenting the saved objects", (2, 3))
        answer_step = with_status(unless_stopped(h.ask), "Reading the video, then answering", (3, 3))
        for start, button in starts:
            button.click(start.fill, None, [video, question], queue=False, api_visibility="private").then(
                decode_step, [video, state], loaded, api_visibility="private").success(
                saved_step, [state], [state, slider, editor, *panel], api_visibility="private", **gpu).success(
                answer_step, [question, mode, state], [chat, question], show_progress_on=chat,
                api_visibility="private", **gpu)
        slider.change(h.scrub, [slider, state], [editor, *panel], show_progress="hidden", api_visibility="private")
        frame.select(with_status(h.on_click, "Segmenting"), [slider, click_mode, state], [state, *panel],
                     api_visibility="private", **gpu)
        use_brush.click(with_status(h.on_brush, "Segmenting"), [editor, slider, refine, state], [state, *panel],
                        api_visibility="private", **gpu)
        new.click(h.add_object, [slider, state], [state, *panel], api_visibility="private")
        use_saved.click(with_status(h.add_saved_objects, "Segmenting the saved objects"), [state],
                        [state, slider, editor, *panel], api_visibility="private", **gpu)
        objects.input(h.choose_object, [objects, slider, state], [state, *panel], api_visibility="private")
        rename.click(h.rename, [name, slider, state], [state, *panel, chat], api_visibility="private")
        remove.click(h.remove, [slider, state], [state, *panel, chat], api_visibility="private")
        clear.click(h.clear_clicks, [slider, state], [state, *panel], api_visibility="private", **gpu)
        tracking = track.click(h.track, [slider, state], [state, *panel, tracked, video_file, regions_file],
                               api_visibility="private", **gpu)
        tracking.success(lambda: gr.Accordion(open=True), None, saved_box, queue=False,  # the tracked video is there
                         api_visibility="private")
        save.click(h.save_regions, [state], [regions_file], api_visibility="private")
        regions_upload.upload(h.restore_regions, [regions_upload, slider, state], [state, *panel, tracked, video_file],
                              api_visibility="private")
        for trigger in (find.click, find_text.submit):
            trigger(h.on_find, [find_text, find_threshold, find_track, slider, state], [state, *panel],
                    api_visibility="private", **gpu)
        ask = with_status(h.ask, "Reading the video, then answering")
        for trigger in (send.click, question.submit):
            trigger(ask, [question, mode, state], [chat, question], show_progress_on=chat, api_visibility="private",
                    **answer)
        describe.click(with_status(h.describe, "Reading the video, then describing"), [mode, state],
                       [chat, question], show_progress_on=chat, api_visibility="private", **answer)
        stop.click(h.stop, [state], None, queue=False, api_visibility="private")  # ends generation, keeps the text
        demo.unload(h.unload)  # a visitor leaving stops their answer and frees their GPU memory
        relate.click(h.relate_question, [state], [question], api_visibility="private")
        clear_chat.click(h.clear_chat, [state], [chat], api_visibility="private")
    return demo


def _api(h: DemoHandlers, gpu: dict, answer: dict) -> None:
    """The gradio_client endpoints /segment, /track, /describe, /ask and /find (hidden components, documented in
    /?view=api)."""
    with gr.Column(visible=False):
        video = gr.File(label="video")
        frame_index = gr.Number(label="frame_index", precision=0)
        points, labels, box = gr.JSON(label="points"), gr.JSON(label="labels"), gr.JSON(label="box")
        regions, history = gr.JSON(label="regions"), gr.JSON(label="history")
        question = gr.Textbox(label="question")
        mode = gr.Textbox(value="auto", label="mode")
        mask_out, regions_out, text_out = gr.JSON(label="mask"), gr.JSON(label="regions"), gr.Textbox(label="text")
        buttons = [gr.Button(visible=False) for _ in range(4)]
    buttons[0].click(h.api_segment, [video, frame_index, points, labels, box], mask_out, api_name="segment", **gpu)
    buttons[1].click(h.api_track, [video, regions], regions_out, api_name="track", **gpu)
    buttons[2].click(h.api_describe, [video, regions, mode], text_out, api_name="describe", **answer)
    buttons[3].click(h.api_ask, [video, regions, question, history, mode], text_out, api_name="ask", **answer)
    with gr.Column(visible=False):  # /find: objects by name (inputs after /ask's, so the four above keep their ids)
        phrase, track = gr.Textbox(label="phrase"), gr.Checkbox(value=False, label="track")
        threshold = gr.Number(value=h.backend.settings.find_threshold, label="threshold")  # 0..1, checked in find.py
        find_button = gr.Button(visible=False)
    find_button.click(h.api_find, [video, frame_index, phrase, track, threshold], regions_out, api_name="find", **gpu)


def launch(settings: Settings, backend: Backend | None = None, **kwargs) -> gr.Blocks:
    """Load the models once (unless given), build the page and serve it (no share link; only examples/ is served
    from disk besides gradio's upload cache). `kwargs` go to `Blocks.launch` (e.g. `prevent_thread_lock=True`)."""
    backend = backend or load_backend(settings)
    demo = build_demo(backend)
    demo.queue(default_concurrency_limit=8)
    demo.launch(
        server_name=settings.host, server_port=settings.port, share=False, allowed_paths=[str(EXAMPLES)],
        # show_error=False: visitors see only our messages (gr.Error), never gradio's own, which can name server paths
        max_file_size=int(settings.limits.max_file_mb * 1_000_000), show_error=False, css=CSS, **kwargs,
    )
    return demo


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings()
    try:
        backend = load_backend(settings)
    except (OSError, ValueError) as error:  # no network, a wrong id, a broken folder: say so, without a traceback
        raise SystemExit(
            f"Could not load the models ({settings.model}, {settings.sam2}): {error}\n"
            "Check the model ids and your connection to the Hugging Face Hub, or run `python app.py --tiny` to try "
            "the demo offline on random tiny models."
        ) from None
    launch(settings, backend)
