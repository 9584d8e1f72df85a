"""Drawing masks, clicks and boxes over a frame, one colour per object, and colouring `<objectN>` tags in text."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from videorefer.prompts import OBJECT_TAG

# Distinct, readable colours (Tableau 10); object k gets PALETTE[k % 10].
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
TAG = OBJECT_TAG


def color_of(index: int) -> tuple[int, int, int]:
    """The RGB colour of `<object{index}>`."""
    return PALETTE[index % len(PALETTE)]


def hex_color(index: int) -> str:
    return "#%02x%02x%02x" % color_of(index)


def display_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled down so that the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _edges(mask: np.ndarray) -> np.ndarray:
    """The mask's outline (pixels of the mask with a 4-neighbour outside it), 2 px thick."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = mask & ~inner
    thick = edge.copy()
    thick[1:] |= edge[:-1]
    thick[:, 1:] |= edge[:, :-1]
    return thick & mask


def _resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask.astype(bool)
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(image) > 127


def render_overlay(
    frame: np.ndarray,
    masks: Mapping[int, np.ndarray],
    clicks: Sequence[tuple[int, float, float, int]] = (),
    boxes: Sequence[tuple[int, Sequence[float]]] = (),
    pending_corner: tuple[float, float] | None = None,
    max_side: int = 960,
    alpha: float = 0.45,
) -> np.ndarray:
    """The frame (H, W, 3) scaled to `max_side`, with each object's mask filled and outlined in its colour.

    `masks`: object index -> bool (H, W); `clicks`: (object index, x, y, label 1/0) in frame pixels; `boxes`:
    (object index, [x0, y0, x1, y1]); `pending_corner`: the first corner of a box being drawn.
    """
    height, width = frame.shape[:2]
    out_h, out_w = display_size(height, width, max_side)
    image = frame if (out_h, out_w) == (height, width) else np.asarray(
        Image.fromarray(frame).resize((out_w, out_h), Image.BILINEAR)
    )
    canvas = image.astype(np.float32)
    for index, mask in masks.items():
        small = _resize_mask(np.asarray(mask), out_h, out_w)
        if not small.any():
            continue
        color = np.array(color_of(index), dtype=np.float32)
        canvas[small] = canvas[small] * (1 - alpha) + color * alpha
        canvas[_edges(small)] = color
    result = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    sx, sy = out_w / width, out_h / height
    radius = max(4, round(max(out_h, out_w) / 120))
    for index, box in boxes:
        x0, y0, x1, y1 = box
        draw.rectangle([x0 * sx, y0 * sy, x1 * sx, y1 * sy], outline=color_of(index), width=3)
    for index, x, y, label in clicks:
        cx, cy = x * sx, y * sy
        fill = (40, 200, 60) if label else (230, 40, 40)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill, outline=(255, 255, 255), width=2)
        if not label:
            draw.line([cx - radius + 2, cy, cx + radius - 2, cy], fill=(255, 255, 255), width=2)
    if pending_corner is not None:
        cx, cy = pending_corner[0] * sx, pending_corner[1] * sy
        draw.line([cx - 2 * radius, cy, cx + 2 * radius, cy], fill=(255, 255, 0), width=2)
        draw.line([cx, cy - 2 * radius, cx, cy + 2 * radius], fill=(255, 255, 0), width=2)
    for index, mask in masks.items():
        small = _resize_mask(np.asarray(mask), out_h, out_w)
        if small.any():
            ys, xs = np.nonzero(small)
            tx, ty = float(xs.mean()), float(ys.mean())
            text = f"<object{index}>"
            left, top, right, bottom = draw.textbbox((tx, ty), text)
            draw.rectangle([left - 3, top - 2, right + 3, bottom + 2], fill=color_of(index))
            draw.text((tx, ty), text, fill=(255, 255, 255))
    return np.asarray(result)


def colour_tags(text: str, names: Sequence[str] = ()) -> str:
    """HTML-escape `text` and show each `<objectN>` as a coloured tag (with the object's name when known)."""
    parts, last = [], 0
    for match in TAG.finditer(text):
        parts.append(html.escape(text[last:match.start()]))
        index = int(match.group(1))
        name = f" {html.escape(names[index])}" if index < len(names) and names[index] else ""
        parts.append(
            f'<span style="color:{hex_color(index)};font-weight:600">●&lt;object{index}&gt;{name}</span>'
        )
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


def legend_html(names: Sequence[str], tracked: Sequence[bool], active: int | None) -> str:
    """A list of the objects with their colour swatch, name, tracking state and the active one marked."""
    if not names:
        return "<p><em>No objects yet: click on the frame to create &lt;object0&gt;.</em></p>"
    rows = []
    for k, name in enumerate(names):
        state = "tracked" if tracked[k] else "this frame only"
        mark = " ◀ editing" if k == active else ""
        rows.append(
            f'<li><span style="display:inline-block;width:0.9em;height:0.9em;border-radius:3px;'
            f'background:{hex_color(k)};vertical-align:middle"></span> '
            f'<b>&lt;object{k}&gt;</b> {html.escape(name)} <small>({state}){mark}</small></li>'
        )
    return f'<ul style="list-style:none;padding-left:0;margin:0">{"".join(rows)}</ul>'
