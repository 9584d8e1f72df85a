"""Synthetic referring task: moving coloured shapes whose answers depend on *which* object is masked.

Each video shows 2-3 shapes (circle / square / triangle) in distinct colours (red / green / blue / yellow), each moving
in a distinct direction (left / right / up / down) on a grey, lightly noisy background. Masks are exact per frame and
shapes never overlap, so every mask is exactly the set of pixels drawn in the object's colour. Videos are encoded
losslessly (H.264 RGB, ``libx264rgb`` with ``qp=0``; bit-exact after decoding with PyAV or decord) or written as
folders of PNG frames (``--frames-as-folders``).

Question families (single-word answers, so accuracy is exact match):

========== ================================================================ ===========================
family     question (VideoRefer-700K style, regions written ``<region>``)    answers
========== ================================================================ ===========================
colour     What colour is <region>? Answer with one word.                    red, green, blue, yellow
shape      What shape is <region>? Answer with one word.                     circle, square, triangle
direction  Which way does <region> move? Answer left, right, up or down.     left, right, up, down
relation   Which is further left, <region> or <region>? Answer first or      first, second
           second.
========== ================================================================ ===========================

The asked-about object is drawn at random and given the scheduled answer's attribute, so answers are exactly balanced
per family (up to ``n mod options``) and a model that ignores the mask is at chance. Training data is written in the
VideoRefer-700K format (``<region>`` tags, one annotation dict per ``<region>`` in order; an extra ``"family"`` key
names the question family); our inference prompts (see docs/ARCHITECTURE.md) write the same regions as ``[<region>]``.

From the held-out videos the CLI also writes a mini benchmark in the official VideoRefer-Bench formats: Bench-Q
multiple-choice items (``<objectK><region>`` tags; types "Basic Questions", "Sequential Questions", "Relationship
Questions", "Future Predictions") and Bench-D captions.

Usage: ``python -m videorefer.data.synthetic OUT_DIR --train 400 --heldout 100 --seed 0 [--size 64 --frames 8]``
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50), "green": (50, 190, 60), "blue": (50, 90, 230), "yellow": (235, 215, 50),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
FAMILIES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "shape": SHAPES, "direction": tuple(DIRECTIONS), "relation": ("first", "second"),
}
QUESTIONS: dict[str, str] = {
    "colour": "What colour is <region>? Answer with one word.",
    "shape": "What shape is <region>? Answer with one word.",
    "direction": "Which way does <region> move? Answer left, right, up or down.",
    "relation": "Which is further left, <region> or <region>? Answer first or second.",
}
BACKGROUND = 100  # grey level; the noise is grey too, so it never equals a (saturated) object colour
MAX_ATTEMPTS = 2000


@dataclass
class ShapeObject:
    """One moving shape: attributes and its centre ``(x, y)`` in pixels at every frame."""

    colour: str
    shape: str
    direction: str
    radius: float
    centres: np.ndarray  # (T, 2) float


@dataclass
class SyntheticVideo:
    """A rendered video with exact masks and, per question family, the asked-about objects and the answer."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (n_objects, T, H, W) bool
    objects: list[ShapeObject]
    targets: dict[str, tuple[int, ...]]  # family -> object indices, in the order of the question's <region> tags
    answers: dict[str, str]  # family -> answer word


def chance_levels() -> dict[str, float]:
    """Chance accuracy per family (1 / number of answers) and overall (families are equally frequent)."""
    chance = {family: 1.0 / len(options) for family, options in FAMILIES.items()}
    chance["overall"] = float(np.mean(list(chance.values())))
    return chance


def shape_masks(shape: str, centres: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Boolean masks ``(T, size, size)`` of a shape centred at ``centres`` ``(T, 2)`` (x, y), vectorised over frames."""
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        half = 0.8 * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex up at (cx, cy - r), base at y = cy + 0.75 r with half-width r
        return (dy <= 0.75 * radius) & (np.abs(dx) <= (dy + radius) / 1.75)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render(objects: list[ShapeObject], size: int, num_frames: int, noise: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the objects on a grey noisy background; return frames ``(T, H, W, 3)`` and masks ``(n, T, H, W)``."""
    grey = BACKGROUND + rng.integers(-noise, noise + 1, size=(num_frames, size, size, 1)) if noise else \
        np.full((num_frames, size, size, 1), BACKGROUND)
    frames = np.repeat(grey.astype(np.uint8), 3, axis=3)
    masks = np.stack([shape_masks(o.shape, o.centres, o.radius, size) for o in objects])
    for obj, mask in zip(objects, masks):
        frames[mask] = COLOURS[obj.colour]
    return frames, masks


def _with_wanted(options: tuple[str, ...], wanted: str, target: int, n: int, rng: np.random.Generator) -> list[str]:
    """Distinct values for ``n`` objects where object ``target`` gets ``wanted`` and the rest are drawn at random."""
    rest = [o for o in options if o != wanted]
    values = [rest[i] for i in rng.permutation(len(rest))[: n - 1]]
    values.insert(target, wanted)
    return values


def _left_pairs(objects: list[ShapeObject]) -> list[tuple[int, int]]:
    """Pairs ``(a, b)`` where ``a`` is left of ``b`` by at least the larger radius in every frame."""
    pairs = []
    for a in range(len(objects)):
        for b in range(len(objects)):
            gap = objects[b].centres[:, 0] - objects[a].centres[:, 0]
            if a != b and np.all(gap >= max(objects[a].radius, objects[b].radius)):
                pairs.append((a, b))
    return pairs


def make_video(name: str, wanted: dict[str, str], rng: np.random.Generator, size: int = 64, num_frames: int = 8,
               noise: int = 6) -> SyntheticVideo:
    """Sample a video whose per-family answers are ``wanted`` (a family -> answer dict covering all families)."""
    scale = size / 64
    for _ in range(MAX_ATTEMPTS):
        n = int(rng.integers(2, 4))
        t_colour, t_shape, t_direction = (int(t) for t in rng.integers(n, size=3))
        colours = _with_wanted(FAMILIES["colour"], wanted["colour"], t_colour, n, rng)
        shapes = _with_wanted(SHAPES, wanted["shape"], t_shape, n, rng)
        directions = _with_wanted(FAMILIES["direction"], wanted["direction"], t_direction, n, rng)
        objects, ok = [], True
        for colour, shape, direction in zip(colours, shapes, directions):
            radius = float(rng.uniform(6.0, 8.0) * scale)
            speed = float(rng.uniform(1.5, 2.5) * scale * min(1.0, 7 / (num_frames - 1)))  # travel <= ~17 px @64
            step = np.array(DIRECTIONS[direction], dtype=np.float64) * speed
            travel = step * (num_frames - 1)
            low = radius + 1 - np.minimum(travel, 0)  # keep the whole trajectory inside the frame
            high = size - radius - 2 - np.maximum(travel, 0)
            if np.any(high <= low):
                ok = False
                break
            start = rng.uniform(low, high)
            centres = start[None, :] + np.arange(num_frames)[:, None] * step[None, :]
            objects.append(ShapeObject(colour, shape, direction, radius, centres))
        if not ok or not _separated(objects):
            continue
        pairs = _left_pairs(objects)
        if not pairs:
            continue
        left, right = pairs[int(rng.integers(len(pairs)))]
        relation = (left, right) if wanted["relation"] == "first" else (right, left)
        frames, masks = render(objects, size, num_frames, noise, rng)
        targets = {"colour": (t_colour,), "shape": (t_shape,), "direction": (t_direction,), "relation": relation}
        return SyntheticVideo(name, frames, masks, objects, targets, dict(wanted))
    raise RuntimeError(f"could not place objects in a {size}x{size} video of {num_frames} frames after "
                       f"{MAX_ATTEMPTS} attempts; use a larger --size or fewer --frames")


def _separated(objects: list[ShapeObject]) -> bool:
    """True if no two objects come closer than their bounding circles (plus a 2 px gap) in any frame."""
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            distance = np.linalg.norm(objects[i].centres - objects[j].centres, axis=1)
            if np.any(distance < 1.25 * (objects[i].radius + objects[j].radius) + 2):
                return False
    return True


def balanced_schedule(n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """Per-video wanted answers: each family's answers repeated evenly over ``n`` videos, then shuffled."""
    columns = {f: [options[i] for i in rng.permutation(np.resize(np.arange(len(options)), n))]
               for f, options in FAMILIES.items()}
    return [{f: columns[f][i] for f in FAMILIES} for i in range(n)]


# --------------------------------------------------------------------------------------------------- writing

def annotation(video: SyntheticVideo, object_indices: tuple[int, ...]) -> list[dict]:
    """Official annotation list: one ``{"<frame>": {"segmentation": RLE}}`` dict per object, all frames."""
    from videorefer.regions import mask_to_rle  # imported here: it loads torch, which only writing needs

    return [{str(t): {"segmentation": mask_to_rle(video.masks[k, t])} for t in range(video.masks.shape[1])}
            for k in object_indices]


def write_video(frames: np.ndarray, path: Path, as_folder: bool, fps: int = 8) -> None:
    """Write frames losslessly: H.264 RGB (``libx264rgb``, ``qp=0``) mp4, or a folder of ``00000.png``..."""
    if as_folder:
        path.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{t:05d}.png")
        return
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def train_samples(video: SyntheticVideo, rel_path: str) -> list[dict]:
    """One single-turn VideoRefer-700K sample per question family."""
    height, width = video.frames.shape[1:3]
    return [{
        "id": f"{video.name}_{family}", "video": rel_path,
        "conversations": [{"from": "human", "value": "<video>\n" + QUESTIONS[family]},
                          {"from": "gpt", "value": video.answers[family]}],
        "annotation": annotation(video, video.targets[family]),
        "height": int(height), "width": int(width), "family": family,
    } for family in FAMILIES]


MOTION = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
EDGE = {"left": "The left edge", "right": "The right edge", "up": "The top edge", "down": "The bottom edge"}


def bench_q_items(video: SyntheticVideo, rel_path: str, rng: np.random.Generator) -> list[dict]:
    """VideoRefer-Bench-Q multiple-choice items (``id`` filled in by the caller)."""
    a = video.answers
    specs = [  # (type, question, options, answer, objects)
        ("Basic Questions", "What colour is <object0><region>?",
         [c.capitalize() for c in COLOURS], a["colour"].capitalize(), video.targets["colour"]),
        ("Basic Questions", "What shape is <object0><region>?",
         [s.capitalize() for s in SHAPES], a["shape"].capitalize(), video.targets["shape"]),
        ("Sequential Questions", "In which direction does <object0><region> move during the video?",
         [d.capitalize() for d in DIRECTIONS], a["direction"].capitalize(), video.targets["direction"]),
        ("Relationship Questions", "Is <object0><region> to the left or to the right of <object1><region>?",
         ["To the left", "To the right"], "To the left" if a["relation"] == "first" else "To the right",
         video.targets["relation"]),
        ("Future Predictions", "If <object0><region> keeps moving the same way, which edge of the frame will it "
         "reach first?", list(EDGE.values()), EDGE[a["direction"]], video.targets["direction"]),
    ]
    items = []
    for kind, question, options, answer, objects in specs:
        order = [options[i] for i in rng.permutation(len(options))]
        lettered = [f"({chr(65 + i)}) {o}" for i, o in enumerate(order)]
        items.append({"video": rel_path, "Question": question, "type": kind, "options": lettered,
                      "Answer": lettered[order.index(answer)], "frame_idx": str(video.frames.shape[0] // 2),
                      "annotation": annotation(video, objects)})
    return items


def bench_d_item(video: SyntheticVideo, rel_path: str) -> dict:
    """VideoRefer-Bench-D description item about the colour-question object (``id`` filled in by the caller)."""
    k = video.targets["colour"][0]
    obj = video.objects[k]
    others = len(video.objects) - 1
    caption = (f"The object is a {obj.colour} {obj.shape}. It moves steadily {MOTION[obj.direction]} across the "
               f"frame while {others} other shape{'s' if others > 1 else ''} of different colours move nearby.")
    return {"video": rel_path, "caption": caption, "frame_idx": str(video.frames.shape[0] // 2),
            "annotation": annotation(video, (k,))}


def generate(out_dir: Path, n_train: int = 400, n_heldout: int = 100, seed: int = 0, size: int = 64,
             num_frames: int = 8, noise: int = 6, frames_as_folders: bool = False, fps: int = 8) -> dict:
    """Write videos, ``train.json``, ``heldout.json``, ``bench_q.json``, ``bench_d.json`` and ``meta.json``.

    ``n_train`` / ``n_heldout`` count videos; each video gives one sample per family (4 samples). The held-out
    split uses its own seed stream, so it does not change with ``n_train``. ``fps``: the video files' frame rate
    (models that sample by time, as VL3 at 1 fps, see more of a slower video). Returns the meta dict.
    """
    if size < 32 or num_frames < 2:
        raise ValueError(f"need --size >= 32 and --frames >= 2, got size={size}, frames={num_frames}")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    train_seq, heldout_seq, bench_seq = np.random.SeedSequence(seed).spawn(3)
    bench_rng = np.random.default_rng(bench_seq)
    meta: dict = {"seed": seed, "size": size, "frames": num_frames, "fps": fps, "noise": noise,
                  "chance": chance_levels(), "videos": {}}
    bench_q: list[dict] = []
    bench_d: list[dict] = []
    for split, n, seq in (("train", n_train, train_seq), ("heldout", n_heldout, heldout_seq)):
        rng = np.random.default_rng(seq)
        samples = []
        for i, wanted in enumerate(balanced_schedule(n, rng)):
            video = make_video(f"{split}_{i:05d}", wanted, rng, size, num_frames, noise)
            rel_path = f"videos/{video.name}" + ("" if frames_as_folders else ".mp4")
            write_video(video.frames, out_dir / rel_path, frames_as_folders, fps=fps)
            samples.extend(train_samples(video, rel_path))
            meta["videos"][video.name] = {
                "path": rel_path, "targets": {f: list(t) for f, t in video.targets.items()}, "answers": video.answers,
                "objects": [{"colour": o.colour, "shape": o.shape, "direction": o.direction,
                             "radius": round(o.radius, 3), "centres": np.round(o.centres, 3).tolist()}
                            for o in video.objects]}
            if split == "heldout":
                bench_q.extend(bench_q_items(video, rel_path, bench_rng))
                bench_d.append(bench_d_item(video, rel_path))
        (out_dir / f"{split}.json").write_text(json.dumps(samples))
    for items, name in ((bench_q, "bench_q.json"), (bench_d, "bench_d.json")):
        (out_dir / name).write_text(json.dumps([{"id": i, **item} for i, item in enumerate(items)]))
    (out_dir / "meta.json").write_text(json.dumps(meta))
    return meta


def main(argv: list[str] | None = None) -> None:
    """CLI entry point; prints chance levels."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=400, help="number of training videos (4 samples each)")
    parser.add_argument("--heldout", type=int, default=100, help="number of held-out videos (4 samples each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--noise", type=int, default=6, help="grey background noise amplitude (0: plain)")
    parser.add_argument("--frames-as-folders", action="store_true", help="write PNG frame folders, not mp4")
    parser.add_argument("--fps", type=int, default=8, help="frame rate of the video files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    meta = generate(args.out_dir, args.train, args.heldout, args.seed, args.size, args.frames, args.noise,
                    args.frames_as_folders, args.fps)
    print(f"wrote {len(meta['videos'])} videos and {4 * len(meta['videos'])} samples to {args.out_dir} "
          f"in {time.perf_counter() - start:.1f} s")
    print("chance accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in meta["chance"].items()))


if __name__ == "__main__":
    main()
