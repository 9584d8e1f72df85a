"""Region files: bool masks <-> COCO RLE <-> the official VideoRefer annotation format.

An *object* (see docs/ARCHITECTURE.md) is `dict[int, np.ndarray]`: raw frame index -> bool mask `(H, W)`.

The official format used by VideoRefer-700K and VideoRefer-Bench is a list with one dict per object,
`[{"<frame_idx>": {"segmentation": RLE | polygon | null}}, ...]`, where RLE is `{"size": [h, w], "counts": str}`
(COCO compressed), a polygon is a COCO list of flat `[x0, y0, x1, y1, ...]` lists, and `null` means no mask on that
frame (the frame is absent from the decoded object). Encoding always writes RLE, so
`annotation_to_objects(objects_to_annotation(objs)) == objs` bit for bit.
"""

from __future__ import annotations

import json
import numbers
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Object = dict[int, np.ndarray]
# What the model side accepts as an object: raw frame index -> (H, W) mask as an array, tensor, COCO RLE dict or
# COCO polygon list (decoded with `decode_segmentation`).
ObjectMasks = Mapping[int, Any]

__all__ = [
    "mask_to_rle",
    "rle_to_mask",
    "decode_segmentation",
    "annotation_to_objects",
    "objects_to_annotation",
    "objects_to_json",
    "objects_from_json",
    "read_regions_document",
    "select_object_frames",
    "FRAME_MODES",
    "Object",
    "ObjectMasks",
]

JSON_FORMAT = "videorefer-regions"
JSON_VERSION = 1


# ----------------------------------------------------------------------------------------------------------- masks
def _as_bool_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """Validate a 2-D binary mask and return it as a bool array (H, W)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {arr.dtype}")
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must only contain 0 and 1 (or be bool)")
        arr = arr.astype(bool)
    return arr


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encode a bool mask (H, W) as JSON-safe COCO RLE `{"size": [h, w], "counts": str}`."""
    arr = _as_bool_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(arr, dtype=np.uint8))  # column-major, as COCO expects
    return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": rle["counts"].decode("ascii")}


def _parse_size(rle: Mapping) -> tuple[int, int]:
    size = rle.get("size")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise ValueError(f"invalid RLE: 'size' must be [height, width] of non-negative ints, got {size!r}")
    return int(size[0]), int(size[1])


def _compressed_run_lengths(counts: str) -> list[int]:
    """Decode COCO's compressed counts string (6-bit chunks, delta-coded after the 2nd run) to run lengths."""
    runs: list[int] = []
    pos, n = 0, len(counts)
    while pos < n:
        value, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise ValueError("invalid RLE: 'counts' ends in the middle of a run length")
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid RLE: unexpected character {counts[pos]!r} in 'counts'")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value -= 1 << shift  # sign-extend
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_to_mask(rle: Mapping, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Decode COCO RLE (compressed str/bytes counts, or uncompressed list counts) to a bool mask (H, W).

    Raises `ValueError` for malformed RLE (bad size, bad characters, run lengths that do not cover exactly h*w
    pixels) or when `height`/`width` are given and differ from the RLE's size.
    """
    if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
        raise ValueError(f"invalid RLE: expected a dict with 'size' and 'counts', got {type(rle).__name__}")
    h, w = _parse_size(rle)
    if (height is not None and h != height) or (width is not None and w != width):
        raise ValueError(f"RLE size {h}x{w} does not match the expected {height}x{width}")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        runs = _compressed_run_lengths(counts)
        coco = {"size": [h, w], "counts": counts.encode("ascii")}
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in counts):
            raise ValueError("invalid RLE: uncompressed 'counts' must be a list of ints")
        runs = [int(v) for v in counts]
        coco = {"size": [h, w], "counts": runs}
    else:
        raise ValueError(f"invalid RLE: 'counts' must be a str or a list of ints, got {type(counts).__name__}")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"invalid RLE: run lengths cover {sum(runs)} pixels, expected {h}x{w}={h * w}")
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    if isinstance(coco["counts"], list):
        coco = mask_utils.frPyObjects(coco, h, w)
    return _decode(coco)


def _decode(coco_rle: dict) -> np.ndarray:
    # pycocotools 2.0.x triggers a NumPy 2 `__array__(copy=...)` DeprecationWarning inside decode; it is harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(coco_rle).astype(bool)


MAX_POLYGON_PERIMETER = 100  # a polygon's outline may run at most this many times (height + width) pixels


def _polygon_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons. Every coordinate must be a finite number near the frame (within one frame's size of it) and
    the outlines together at most `MAX_POLYGON_PERIMETER` times (height + width) long: pycocotools allocates by the
    outline's length (1e308 made it write through a null pointer), so nothing else reaches it."""
    if not all(
        isinstance(p, (list, tuple))
        and len(p) >= 6
        and len(p) % 2 == 0
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in p)
        for p in polygons
    ):
        raise ValueError("invalid polygon: expected a list of flat [x0, y0, x1, y1, ...] lists with >= 3 points each")
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    length = 0.0
    for p in polygons:
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise ValueError("invalid polygon: coordinates must be finite numbers")
        # Annotation tools leave points a little outside the frame (pycocotools crops them, as the official code
        # relies on); a point more than a frame's size away is an error, not an annotation.
        outside = (xy[:, 0] < -width) | (xy[:, 0] > 2 * width) | (xy[:, 1] < -height) | (xy[:, 1] > 2 * height)
        if outside.any():
            x, y = xy[outside.argmax()]
            raise ValueError(f"invalid polygon: the point ({x:g}, {y:g}) is far outside the {width}x{height} frame "
                             f"(at most one frame's width / height beyond an edge)")
        length += float(np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1).sum())
    if length > MAX_POLYGON_PERIMETER * (height + width):
        raise ValueError(f"invalid polygon: its outline is {length:.0f} pixels long; at most "
                         f"{MAX_POLYGON_PERIMETER * (height + width)} for a {width}x{height} frame")
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return _decode(mask_utils.merge(rles))


def decode_segmentation(seg: Any, height: int | None, width: int | None) -> np.ndarray | None:
    """Decode one official `segmentation` value (RLE dict, polygon list or None) to a bool mask (H, W) or None.

    `height`/`width` may be None for RLE (its own size is used) but are required for polygons.
    """
    if seg is None:
        return None
    if isinstance(seg, Mapping):
        return rle_to_mask(seg, height, width)
    if isinstance(seg, (list, tuple)):
        if height is None or width is None:
            raise ValueError("polygon segmentations need the video's height and width")
        return _polygon_to_mask(list(seg), int(height), int(width))
    raise ValueError(f"invalid segmentation: expected RLE dict, polygon list or None, got {type(seg).__name__}")


# ----------------------------------------------------------------------------------------------- official format
def _frame_key(key: Any, num_frames: int | None) -> int:
    try:
        idx = int(key)
    except (TypeError, ValueError):
        raise ValueError(f"frame keys must be integers (as strings), got {key!r}") from None
    if isinstance(key, float) or str(idx) != str(key).strip() or idx < 0:
        raise ValueError(f"frame keys must be non-negative integers, got {key!r}")
    if num_frames is not None and idx >= num_frames:
        raise ValueError(f"frame index {idx} is out of range for a video of {num_frames} frames")
    return idx


def annotation_to_objects(
    annotation: Iterable[Mapping],
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
) -> list[Object]:
    """Decode the official `annotation` list into objects (`null` frames are left out).

    All masks must share one size; it is checked against `height`/`width` when given.
    """
    if isinstance(annotation, Mapping) or isinstance(annotation, (str, bytes)):
        raise ValueError("annotation must be a list with one dict per object")
    objects: list[Object] = []
    for k, per_frame in enumerate(annotation):
        if not isinstance(per_frame, Mapping):
            raise ValueError(f"annotation[{k}] must be a dict of frame index -> {{'segmentation': ...}}")
        obj: Object = {}
        for key, value in per_frame.items():
            idx = _frame_key(key, num_frames)
            if value is None:
                continue
            if not isinstance(value, Mapping) or "segmentation" not in value:
                raise ValueError(f"annotation[{k}][{key!r}] must be a dict with a 'segmentation' key")
            try:
                mask = decode_segmentation(value["segmentation"], height, width)
            except ValueError as err:
                raise ValueError(f"annotation[{k}][{key!r}]: {err}") from None
            if mask is None:
                continue
            if height is None:  # the first RLE fixes the size for every later mask
                height, width = mask.shape
            obj[idx] = mask
        objects.append(dict(sorted(obj.items())))
    return objects


def _check_objects(objects: Iterable[Mapping]) -> list[Object]:
    """Validate a list of objects (int frame -> bool mask), all masks of one size; return normalised copies."""
    if isinstance(objects, Mapping):
        raise ValueError("objects must be a list of dicts (frame index -> mask), got a single dict")
    out: list[Object] = []
    shape = None
    for k, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            raise ValueError(f"object {k} must be a dict of frame index -> mask, got {type(obj).__name__}")
        norm: Object = {}
        for key, mask in obj.items():
            idx = _frame_key(key, None)
            arr = _as_bool_mask(mask, f"object {k}, frame {idx}")
            if shape is not None and arr.shape != shape:
                raise ValueError(f"object {k}, frame {idx}: mask size {arr.shape} differs from {shape}")
            shape = arr.shape
            norm[idx] = arr
        out.append(dict(sorted(norm.items())))
    return out


def objects_to_annotation(objects: Iterable[Mapping]) -> list[dict]:
    """Encode objects to the official `annotation` list (every present frame as RLE, keys as str)."""
    return [
        {str(idx): {"segmentation": mask_to_rle(mask)} for idx, mask in obj.items()} for obj in _check_objects(objects)
    ]


# ---------------------------------------------------------------------------------------------- saved-regions JSON
def objects_to_json(objects: Iterable[Mapping], names: Iterable[str] | None = None) -> dict:
    """Build the JSON document for saved regions: `{"format", "version", "height", "width", "objects": [{"name",
    "masks": {"<frame_idx>": RLE}}]}` (JSON-serialisable; use `json.dumps` to write it)."""
    objs = _check_objects(objects)
    names = [f"object{k}" for k in range(len(objs))] if names is None else [str(n) for n in names]
    if len(names) != len(objs):
        raise ValueError(f"got {len(names)} names for {len(objs)} objects")
    shapes = {m.shape for obj in objs for m in obj.values()}
    h, w = shapes.pop() if shapes else (None, None)
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "height": h,
        "width": w,
        "objects": [
            {"name": name, "masks": {str(i): mask_to_rle(m) for i, m in obj.items()}} for name, obj in zip(names, objs)
        ],
    }


def _size_value(value: Any, name: str) -> int | None:
    """A document's `height` / `width` as an int (a whole number written as text or a float is accepted)."""
    if value is None:
        return None
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number) or number < 0:
        raise ValueError(f"'{name}' must be a whole number of pixels, got {str(value)[:40]!r}")
    return int(number)


def read_regions_document(doc: str | bytes | Mapping) -> tuple[list[dict[int, Any]], list[str], int | None, int | None]:
    """The parts of a document written by `objects_to_json`, checked but not decoded: per object `{frame: segmentation}`
    (RLE dict, polygon list or None), the names, and the document's height and width (ints, or None). Decoding is left
    to the caller (`decode_segmentation` with the size it expects), so that nothing is allocated before it is checked."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as err:
            raise ValueError(f"regions document is not valid JSON: {err}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("objects"), list):
        raise ValueError("regions document must be a JSON object with an 'objects' list")
    if doc.get("format", JSON_FORMAT) != JSON_FORMAT or doc.get("version", JSON_VERSION) != JSON_VERSION:
        raise ValueError(f"unsupported regions document {str(doc.get('format'))[:40]!r} v{str(doc.get('version'))[:20]}")
    height, width = _size_value(doc.get("height"), "height"), _size_value(doc.get("width"), "width")
    objects, names = [], []
    for k, entry in enumerate(doc["objects"]):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("masks"), Mapping):
            raise ValueError(f"objects[{k}] must be a dict with a 'masks' dict")
        objects.append({_frame_key(key, None): seg for key, seg in entry["masks"].items()})
        name = entry.get("name", f"object{k}")
        if not isinstance(name, (str, int, float)) or isinstance(name, bool):
            raise ValueError(f"objects[{k}]'s name must be text, got {type(name).__name__}")
        names.append(str(name))
    return objects, names, height, width


def objects_from_json(
    doc: str | bytes | Mapping, height: int | None = None, width: int | None = None
) -> tuple[list[Object], list[str]]:
    """Read a document written by `objects_to_json` (dict or JSON text); return `(objects, names)`.

    With `height` / `width` (the video's size), the document's own size must agree and every mask is checked against
    it before it is decoded."""
    entries, names, doc_height, doc_width = read_regions_document(doc)
    if height is not None and doc_height is not None and (doc_height, doc_width) != (height, width):
        raise ValueError(f"the regions are for a {doc_width}x{doc_height} video, not {width}x{height}")
    height = height if height is not None else doc_height
    width = width if width is not None else doc_width
    objects = []
    for k, per_frame in enumerate(entries):
        annotation = {str(frame): {"segmentation": seg} for frame, seg in per_frame.items()}
        try:
            objects.append(annotation_to_objects([annotation], height, width)[0])
        except ValueError as err:
            raise ValueError(str(err).replace("annotation[0]", f"objects[{k}]", 1)) from None
    return objects, names


# ----------------------------------------------------------------------------------------------- model glue
FRAME_MODES = ("single", "multi", "auto")


def select_object_frames(
    object_masks: Mapping[int, np.ndarray],
    mode: str = "single",
    frame_index: int | None = None,
    sampled_frames: Iterable[int] | None = None,
) -> Object:
    """Choose the frames of one object that the model will see: the one frame-selection policy of the package.

    Empty masks are never chosen.

    - `"single"`: one frame: `frame_index` (e.g. the prompted / annotated frame) when given, else the frame with the
      largest mask (earliest on ties). It need not be a sampled frame (the model decodes it as an extra frame).
    - `"multi"`: the object's masks on `sampled_frames` (the frames the model samples; default: all frames of the
      object); when it has none there, all its masks (decoded as extra frames).
    - `"auto"`: `"multi"` when the object has masks on more than one frame (e.g. it was tracked), else `"single"`.

    The benchmarks follow the official protocol instead (an item's `frame_idx`, or every annotated frame, null ones
    included): see `bench.common.restrict_annotation`.
    Raises `ValueError` for another mode, a `frame_index` without a non-empty mask, or an object with no non-empty mask.
    """
    if mode not in FRAME_MODES:
        raise ValueError(f"mode must be one of {', '.join(FRAME_MODES)}, got {mode!r}")
    obj = _check_objects([object_masks])[0]
    nonempty = {idx: m for idx, m in sorted(obj.items()) if m.any()}
    if frame_index is not None and frame_index not in nonempty:
        if frame_index in obj:
            raise ValueError(f"the object's mask on frame {frame_index} is empty")
        raise ValueError(f"frame {frame_index} has no mask for this object (frames: {sorted(obj)})")
    if not nonempty:
        raise ValueError("the object has no non-empty mask" if obj else "the object has no masks")
    if mode == "auto":
        mode = "multi" if len(nonempty) > 1 else "single"
    if mode == "single":
        chosen = frame_index if frame_index is not None else max(nonempty, key=lambda i: (int(nonempty[i].sum()), -i))
        return {chosen: nonempty[chosen]}
    wanted = set(nonempty) if sampled_frames is None else {int(i) for i in sampled_frames}
    on_samples = {idx: m for idx, m in nonempty.items() if idx in wanted}
    return on_samples or nonempty
