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

EXAMPLES = Path(__file__).resolve().parent / "examples"
INSTRUCTIONS = """
1. **Upload a video** (or a photo) or pick the example. Move the slider to any frame.
2. **Point at an object**: click on the frame (positive / negative clicks or two box corners), or paint it in the
   *Brush* tab, or type its name and press **Find** (e.g. *the rabbit*, *every car*). Each object gets a colour and a
   tag: `<object0>`, `<object1>`, … Use **New object** for the next one.
3. **Track** the objects through the video (optional): the tracked masks play below the frame; download the video
   or the objects (a regions file you can upload later to restore them). Then **ask** about the objects in the
   chat, e.g. *What is `<object0>` doing?* Removing an object renumbers the later ones, in the chat too.
"""
CSS = ".tiny-banner {background:#fff3cd;border:2px solid #e0a800;border-radius:8px;padding:8px 12px;}"


def build_demo(backend: Backend) -> gr.Blocks:
    """The page: video + frame view on the left, objects on the right, chat below; hidden API endpoints."""
    h = DemoHandlers(backend)
    settings = backend.settings
    gpu, answer = backend.concurrency()  # answering has its own group when a server or vLLM batches answers
    with gr.Blocks(title="VideoRefer demo") as demo:
        state = gr.State(None, time_to_live=3600, delete_callback=h.release)
        gr.Markdown("# VideoRefer — ask about any object in a video")
        if backend.tiny:
            gr.Markdown(f"⚠️ **Tiny mode:** {backend.label}. Use it to try the interface.", elem_classes="tiny-banner",
                        elem_id="tiny-banner")
        else:
            gr.Markdown(f"Models: `{backend.label}`")
        gr.Markdown(backend.model_card(), elem_id="model-card")
        gr.Markdown(INSTRUCTIONS)
        gr.Markdown(settings.limits.describe(), elem_id="limits")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Click", id="click-tab"):
                        frame = gr.Image(label="Frame (click on an object)", type="numpy", interactive=False,
                                         elem_id="frame", buttons=[])
                    with gr.Tab("Brush", id="brush-tab"):
                        editor = gr.ImageEditor(label="Paint over the object", type="numpy", elem_id="brush",
                                                brush=gr.Brush(colors=["#ff3366"], color_mode="fixed"),
                                                transforms=(), layers=False)
                        with gr.Row():
                            refine = gr.Checkbox(value=True, label="Let SAM 2 refine the painted mask")
                            use_brush = gr.Button("Use painted mask")
                slider = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="frame-slider")
                caption = gr.Markdown(elem_id="frame-caption")
                with gr.Row():
                    click_mode = gr.Radio(list(CLICK_LABELS), value="Positive click", label="A click adds",
                                          elem_id="click-mode")
                    clear = gr.Button("Clear clicks on this frame", size="sm")
                track = gr.Button("Track objects through the video", variant="primary", elem_id="track")
                with gr.Row(visible=backend.finder is not None):  # Find by name (Grounding DINO + SAM 2.1)
                    find_text = gr.Textbox(label="Find by name", placeholder="the rabbit, every car", scale=3,
                                           elem_id="find-text")
                    find_threshold = gr.Slider(0, 1, value=settings.find_threshold, step=0.01, scale=2,
                                               label="Detection threshold", elem_id="find-threshold")
                    find_track = gr.Checkbox(value=False, label="Track them", scale=1, elem_id="find-track")
                    find = gr.Button("Find", scale=1, elem_id="find")
                with gr.Accordion("Tracked video and saved regions", open=True):
                    tracked = gr.Video(label="Tracked masks", interactive=False, elem_id="tracked-video")
                    with gr.Row():
                        video_file = gr.File(label="Download the video (mp4)", elem_id="tracked-download")
                        regions_file = gr.File(label="Download the regions (JSON)", elem_id="regions-download")
                        regions_upload = gr.File(label="Restore objects from a regions file", file_types=[".json"],
                                                 type="filepath", elem_id="regions-upload")
                    save = gr.Button("Save the objects as a regions file", size="sm", elem_id="save-regions")
            with gr.Column(scale=2):
                video = gr.File(label="Video or image", file_types=[".mp4", ".webm", ".mov", ".avi", ".gif",
                                                                    *IMAGE_SUFFIXES], type="filepath",
                                elem_id="video-upload")
                gr.Examples([[str(path)] for path in sorted(EXAMPLES.glob("*.mp4"))], inputs=[video],
                            label="Example videos")
                use_saved = gr.Button("Use saved objects (examples)", size="sm", elem_id="use-saved")
                gr.Markdown("### Objects")
                legend = gr.HTML(legend_html([], [], None), elem_id="legend")
                objects = gr.Dropdown(choices=[], label="Object being edited", elem_id="object-select")
                with gr.Row():
                    new = gr.Button("New object", size="sm", elem_id="new-object")
                    remove = gr.Button("Remove object", size="sm", variant="stop")
                with gr.Row():
                    name = gr.Textbox(label="Name", scale=3)
                    rename = gr.Button("Rename", size="sm", scale=1)
        gr.Markdown("### Chat")
        chat = gr.Chatbot(label="Chat", height=360, elem_id="chat")
        with gr.Row():
            question = gr.Textbox(placeholder="Ask about <object0>, <object1>, …", show_label=False, scale=5,
                                  elem_id="question")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
        with gr.Row():
            describe = gr.Button("Describe the selected object", size="sm")
            relate = gr.Button("How do these objects relate?", size="sm")
            mode = gr.Radio(list(MODE_LABELS), value=next(iter(MODE_LABELS)), label="Frames the model sees",
                            info=f"Multi-frame: {backend.region_policy()}.", elem_id="frame-mode")
            clear_chat = gr.Button("Clear chat", size="sm")

        _api(h, gpu, answer)  # first, so that the API names are not taken by the page's own (private) events
        panel = [frame, caption, legend, objects, name]
        video.change(h.load, [video, state], [state, slider, editor, chat, *panel], api_visibility="private")
        slider.change(h.scrub, [slider, state], [editor, *panel], show_progress="hidden", api_visibility="private")
        frame.select(h.on_click, [slider, click_mode, state], [state, *panel], api_visibility="private", **gpu)
        use_brush.click(h.on_brush, [editor, slider, refine, state], [state, *panel], api_visibility="private", **gpu)
        new.click(h.add_object, [slider, state], [state, *panel], api_visibility="private")
        use_saved.click(h.add_saved_objects, [state], [state, slider, editor, *panel], api_visibility="private", **gpu)
        objects.input(h.choose_object, [objects, slider, state], [state, *panel], api_visibility="private")
        rename.click(h.rename, [name, slider, state], [state, *panel, chat], api_visibility="private")
        remove.click(h.remove, [slider, state], [state, *panel, chat], api_visibility="private")
        clear.click(h.clear_clicks, [slider, state], [state, *panel], api_visibility="private", **gpu)
        track.click(h.track, [slider, state], [state, *panel, tracked, video_file, regions_file],
                    api_visibility="private", **gpu)
        save.click(h.save_regions, [state], [regions_file], api_visibility="private")
        regions_upload.upload(h.restore_regions, [regions_upload, slider, state], [state, *panel, tracked, video_file],
                              api_visibility="private")
        for trigger in (find.click, find_text.submit):
            trigger(h.on_find, [find_text, find_threshold, find_track, slider, state], [state, *panel],
                    api_visibility="private", **gpu)
        for trigger in (send.click, question.submit):
            trigger(h.ask, [question, mode, state], [chat, question], api_visibility="private", **answer)
        describe.click(h.describe, [mode, state], [chat, question], api_visibility="private", **answer)
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
        max_file_size=int(settings.limits.max_file_mb * 1_000_000), show_error=True, css=CSS, **kwargs,
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
