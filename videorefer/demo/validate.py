"""A request's structured inputs checked before anything is allocated for them: JSON size and depth, saved-regions
documents (objects, names and masks counted, sized and filtered before a mask is decoded), clicks and boxes.

The bounds are `limits.Limits`; every refusal is a `DemoError` naming the value and what to change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from videorefer.regions import decode_segmentation, read_regions_document

from .limits import DemoError, Limits, VideoInfo, check_name


def parse_json(value: Any, what: str, limits: Limits) -> Any:
    """A JSON input as Python values (text is parsed; None or blank text is None), within `max_json_mb` and
    `max_json_depth`."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        if len(value) > limits.max_json_mb * 1e6:
            raise DemoError(f"{what} is {len(value) / 1e6:.1f} MB of JSON; the limit is {limits.max_json_mb:g} MB.")
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise DemoError(f"{what} is not valid JSON: {error}") from None
        except RecursionError:
            raise DemoError(f"{what} is nested too deeply; the limit is {limits.max_json_depth} levels.") from None
    check_json_bounds(value, what, limits)
    return value


def check_json_bounds(value: Any, what: str, limits: Limits) -> None:
    """`DemoError` when `value` (parsed JSON) nests deeper than `max_json_depth` or would take more than `max_json_mb`
    written out (counted without recursion, stopping at the first excess)."""
    budget, size = limits.max_json_mb * 1e6, 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth > limits.max_json_depth:
                raise DemoError(f"{what} is nested more than {limits.max_json_depth} levels deep; "
                                f"the limit is {limits.max_json_depth}.")
            children = list(item.values()) if isinstance(item, dict) else item
            size += 2 + len(children) + (sum(len(str(key)) + 3 for key in item) if isinstance(item, dict) else 0)
            stack.extend((child, depth + 1) for child in children)
        else:
            size += len(item) + 2 if isinstance(item, str) else 8
        if size > budget:
            raise DemoError(f"{what} is more than {limits.max_json_mb:g} MB of JSON; send less.")


Keep = Callable[[list[set[int]]], list[set[int]]]


def check_regions(
    doc: Any, info: VideoInfo, limits: Limits, what: str = "The regions", keep: Keep | None = None,
    decoded: set[int] | None = None, reserved: Sequence[str] = (),
) -> tuple[list[dict[int, np.ndarray]], list[str]]:
    """The objects and names of a saved-regions document, checked against the video of `info` before any mask is
    decoded: readable, 1 to `max_objects` objects with valid names, at most `max_listed_masks` masks listed, every mask
    on a frame of the video and of the video's size.

    `keep(frames per object) -> frames per object to decode` leaves out masks the request does not use (they are not
    decoded); at most `max_masks` are decoded, and at most `max_extra_frames` of their frames may lie outside
    `decoded` (the frames the request decodes anyway). `what` names the source in messages."""
    doc = parse_json(doc, what, limits)
    try:
        entries, names, height, width = read_regions_document(doc)
    except ValueError as error:
        raise DemoError(f"{what} could not be read: {error}") from None
    if not entries:
        raise DemoError(f"{what} hold no object.")
    if len(entries) > limits.max_objects:
        raise DemoError(f"{what} hold {len(entries)} objects; at most {limits.max_objects} are allowed.")
    if (height is not None and height != info.height) or (width is not None and width != info.width):
        raise DemoError(f"{what} hold masks for a {width}×{height} video; this video is {info.width}×{info.height}.")
    names = [check_name(name, limits, reserved, what=f"<object{k}>'s name") for k, name in enumerate(names)]
    listed = sum(len(obj) for obj in entries)
    if listed > limits.max_listed_masks:
        raise DemoError(f"{what} list {listed} masks; at most {limits.max_listed_masks} are allowed.")
    for k, obj in enumerate(entries):
        if not obj:
            raise DemoError(f"<object{k}> has no mask on any frame.")
        late = [frame for frame in obj if frame >= info.total_frames]
        if late:
            raise DemoError(f"<object{k}> has a mask on frame {late[0]}, but the video has {info.total_frames} frames.")
    present = [{frame for frame, seg in obj.items() if seg is not None} for obj in entries]  # null: no mask there
    frames = keep(present) if keep is not None else present
    count = sum(len(f) for f in frames)
    if count > limits.max_masks:
        raise DemoError(f"{what} hold {count} masks on the frames this request uses; at most {limits.max_masks} are "
                        "allowed: send fewer frames per object.")
    if decoded is not None:
        extra = set().union(*frames) - decoded
        if len(extra) > limits.max_extra_frames:
            raise DemoError(f"{what} have masks on {len(extra)} frames outside the {len(decoded)} frames this request "
                            f"decodes; at most {limits.max_extra_frames} are allowed: put masks on the sampled frames "
                            "(those of /track's output).")
    objects = []
    for k, (obj, chosen) in enumerate(zip(entries, frames)):
        masks = {}
        for frame in sorted(chosen):
            try:
                mask = decode_segmentation(obj[frame], info.height, info.width)
            except ValueError as error:
                raise DemoError(f"<object{k}>'s mask on frame {frame} could not be read: {error}.") from None
            if mask is not None:
                masks[frame] = mask
        objects.append(masks)
    return objects, names


def check_clicks(points: Any, labels: Any, box: Any, info: VideoInfo, limits: Limits) -> dict[str, np.ndarray]:
    """A SAM prompt (`points` (N, 2) float32 with `labels` (N,) int64, and/or `box` (4,) float32) from clicks
    [[x, y], ...] labelled 1 / 0 and a box [x0, y0, x1, y1] in video pixels, or `DemoError`: at most `max_points`
    clicks, finite numbers inside the frame, labels 0 or 1, a box with x0 < x1 and y0 < y1."""
    prompt: dict[str, np.ndarray] = {}
    if points:
        if not isinstance(points, (list, tuple)) or len(points) > 2 * limits.max_points:
            raise DemoError(f"points must be a list of at most {limits.max_points} [x, y] pairs.")
        pts = _numbers(points, "points").reshape(-1, 2) if len(points) else np.zeros((0, 2))
        if len(pts) > limits.max_points:
            raise DemoError(f"{len(pts)} points were given; at most {limits.max_points} are allowed.")
        if labels is None or (isinstance(labels, (list, tuple)) and len(labels) == 0):
            lab = np.ones(len(pts))
        elif not isinstance(labels, (list, tuple)) or len(labels) != len(pts):
            raise DemoError(f"labels must be a list with one 1 (positive) or 0 (negative) per point ({len(pts)}).")
        else:
            lab = _numbers(labels, "labels")
            if not np.isin(lab, (0, 1)).all():
                raise DemoError(f"labels must be 1 (positive) or 0 (negative), got {lab[~np.isin(lab, (0, 1))][0]:g}.")
        _inside(pts, info)
        prompt.update(points=pts.astype(np.float32), labels=lab.astype(np.int64))
    if box:
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise DemoError("box must be [x0, y0, x1, y1] in video pixels.")
        corners = _numbers(box, "box")
        _inside(corners.reshape(2, 2), info)
        if not (corners[0] < corners[2] and corners[1] < corners[3]):
            raise DemoError(f"box must have x0 < x1 and y0 < y1, got {[round(float(v), 1) for v in corners]}.")
        prompt["box"] = corners.astype(np.float32)
    return prompt


def _numbers(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DemoError(f"{what} must hold only numbers.") from None
    if array.dtype != np.float64 or not np.isfinite(array).all():
        raise DemoError(f"{what} must hold only finite numbers.")
    return array


def _inside(points: np.ndarray, info: VideoInfo) -> None:
    outside = (points[:, 0] < 0) | (points[:, 0] >= info.width) | (points[:, 1] < 0) | (points[:, 1] >= info.height)
    if outside.any():
        x, y = points[outside.argmax()]
        raise DemoError(f"The point ({x:g}, {y:g}) is outside the {info.width}×{info.height} frame.")
