"""ZeroGPU: the duration policy, the decorator (unchanged off Spaces; the duration reaches ZeroGPU's scheduler on it),
pickling a visitor's state without the models, and the concurrency limit from the models' devices."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from videorefer.demo import handlers as handlers_module
from videorefer.demo import service
from videorefer.demo.zerogpu import (
    ZEROGPU_MAX_SECONDS,
    ZEROGPU_MIN_SECONDS,
    ZEROGPU_SLOTS,
    gpu,
    gpu_duration,
    gpu_slots,
    model_devices,
)

ROOT = Path(__file__).resolve().parents[1]
BUNNY = str(ROOT / "examples" / "bigbuckbunny.mp4")


def test_the_duration_grows_with_the_work_and_stays_within_zerogpus_limits():
    small, large = gpu_duration("track", frames=16, objects=1), gpu_duration("track", frames=48, objects=4)
    assert ZEROGPU_MIN_SECONDS <= small < large < ZEROGPU_MAX_SECONDS
    assert gpu_duration("track", frames=48, objects=4) > gpu_duration("track", frames=48, objects=2)
    assert gpu_duration("answer", new_tokens=1024) > gpu_duration("answer", new_tokens=64)
    assert gpu_duration("track", frames=10_000, objects=8) == ZEROGPU_MAX_SECONDS
    assert gpu_duration("segment", prompts=0) == ZEROGPU_MIN_SECONDS
    assert all(isinstance(gpu_duration(k), int) for k in ("segment", "track", "answer"))
    with pytest.raises(ValueError, match="kind must be one of"):
        gpu_duration("train")
    with pytest.raises(ValueError, match="frames must be >= 0"):
        gpu_duration("track", frames=-1)


def test_off_zerogpu_the_function_is_unchanged():
    def work(x):
        return x + 1

    assert gpu(work) is work and gpu(duration=30)(work) is work


def test_on_zerogpu_the_computed_duration_reaches_the_scheduler():
    """In a fresh interpreter that believes it is on ZeroGPU (`spaces` reads the environment at import); the
    scheduler (a network call on a Space) is replaced by a recorder."""
    script = """
import spaces.zero.client as client
seen = []
def schedule(task_id, request, duration, gpu_size, **kwargs):
    seen.append(duration.total_seconds())
    raise RuntimeError("scheduled")
client.schedule = schedule
from videorefer.demo.zerogpu import gpu, gpu_duration
@gpu(duration=lambda frames, objects: gpu_duration("track", frames=frames, objects=objects))
def track(frames, objects):
    raise AssertionError("runs only in ZeroGPU's worker")
try:
    track(40, 3)
except RuntimeError:
    pass
print(seen[0], gpu_duration("track", frames=40, objects=3))
"""
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:9",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    asked, policy = out.stdout.split()
    assert float(asked) == float(policy) > ZEROGPU_MIN_SECONDS


def test_handler_durations_follow_the_visitors_work_and_the_state_pickles_without_the_models():
    from videorefer.demo.backend import Settings, load_backend
    from videorefer.demo.limits import Limits

    limits = Limits(scrub_frames=4)
    h = handlers_module.DemoHandlers(load_backend(Settings(tiny=True, device="cpu", limits=limits)))
    state = service.open_video(h.backend, BUNNY, limits)
    service.click(state, 0, 470, 380, "positive", limits)
    service.new_object(state, limits)
    service.click(state, 0, 640, 60, "positive", limits)
    assert handlers_module._track_seconds(h, state) == gpu_duration("track", frames=len(state.frame_indices), objects=2)
    assert handlers_module._answer_seconds(h) == gpu_duration(
        "answer", new_tokens=h.backend.model.generation_defaults["max_new_tokens"])
    data = pickle.dumps((h, state))  # what ZeroGPU sends its worker for a GPU call
    assert len(pickle.dumps(h)) < 1000  # the handlers (and so the models) go by name
    assert len(data) < state.session.frames.nbytes * 1.2  # the state: mostly its decoded frames
    handlers_back, state_back = pickle.loads(data)
    assert handlers_back is h and state_back.session.segmenter is h.backend.segmenter  # by reference
    assert state_back.names == state.names and state_back.uid == state.uid
    assert state_back.stop_event is state.stop_event  # Stop and a visitor leaving reach every copy in this process


def test_the_concurrency_limit_follows_the_models_devices(monkeypatch):
    import torch

    assert model_devices(torch.nn.Linear(2, 2)) == {"cpu"}
    assert gpu_slots({"cpu"}) == 1
    assert gpu_slots({"cuda:0"}) == 1  # one GPU, however many are visible
    assert gpu_slots({"cuda:0", "cuda:1", "cpu"}) == 2
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert gpu_slots({"cuda:0"}) == ZEROGPU_SLOTS


def test_the_page_works_when_every_gpu_call_crosses_a_process_boundary(monkeypatch):
    """ZeroGPU runs each GPU method in a forked worker: arguments and results are pickled, and changes the worker
    makes to its copy of the state are lost unless returned. Emulate that boundary around every GPU method."""
    import inspect

    import gradio as gr

    from videorefer.demo.backend import Settings, load_backend
    from videorefer.demo.limits import Limits

    class Click:
        index = [480, 270]

    limits = Limits(scrub_frames=4)
    h = handlers_module.DemoHandlers(load_backend(Settings(tiny=True, device="cpu", limits=limits)))
    crossings = []

    def across(method):
        if inspect.isgeneratorfunction(method):
            def generator(*args):
                crossings.append(method.__name__)
                for item in method(*pickle.loads(pickle.dumps(args))):
                    yield pickle.loads(pickle.dumps(item))
            return generator

        def call(*args):
            crossings.append(method.__name__)
            return pickle.loads(pickle.dumps(method(*pickle.loads(pickle.dumps(args)))))
        return call

    for name in ("_segment_click", "_segment_brush", "_add_saved", "_clear", "_track", "_answer", "_find"):
        monkeypatch.setattr(h, name, across(getattr(h, name)))
    state, *_ = h.load(BUNNY, None)
    state, image, *_ = h.on_click(0, "Positive click", state, Click())
    assert len(state.objects) == 1 and state.masks_on(0)[0].any()  # the worker's change came back
    state, *_ = h.add_object(0, state)
    state, *_ = h.on_click(0, "Positive click", state, Click())
    state, *_ = h.track(0, state, progress=gr.Progress())  # gradio passes a picklable Progress
    assert all(obj.tracked for obj in state.objects) and len(state.object_masks(1)) == len(state.frame_indices)
    *_, (messages, _) = h.ask("What is <object1> doing?", "Auto (multi-frame if tracked)", state)
    assert state.history and state.history[0][0] == "What is <object1> doing?"
    state, *_ = h.clear_clicks(0, state)
    assert not state.objects[1].prompts
    state, *_ = h.on_find("the rabbit", 0.0, False, 0, state, progress=gr.Progress())
    found = len(state.objects) - 2
    assert found >= 1 and state.names[2].startswith("the rabbit") and 2 in state.masks_on(0)  # the worker's finds
    state, *_ = h.remove(0, state)
    state, *_ = h.on_find("unicorn", 1.0, False, 0, state, progress=gr.Progress())  # a miss: a warning, no error
    assert len(state.objects) == 1 + found
    assert {"_segment_click", "_track", "_answer", "_clear", "_find"} <= set(crossings)
