"""The engine's input: videos with their raw captions.

`--videos` is either a list file (`.json`: a list; `.jsonl`: one object per line) of `{"video": path, "caption": str,
"id"?: str}` (relative paths start at the list file's folder), or a folder of videos whose captions are in a
`captions.json` / `captions.jsonl` list inside it (same fields; `video` relative to the folder) or in a `<stem>.txt`
file next to each video. Ids default to the video file's stem and must be unique.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VideoItem", "load_inputs", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")


@dataclass(frozen=True)
class VideoItem:
    id: str
    video: str  # absolute path
    caption: str


def _read_list(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of {{'video', 'caption'}} objects (or use .jsonl)")
    return data


def _items(entries: list[dict], base: Path, where: str) -> list[VideoItem]:
    items: list[VideoItem] = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str):
            raise ValueError(f"{where}: entry {k} must be an object with a 'video' path")
        caption = entry.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{where}: entry {k} ({entry['video']}) needs a non-empty 'caption'")
        path = Path(entry["video"])
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.exists():
            raise ValueError(f"{where}: entry {k}: video {path} does not exist")
        items.append(VideoItem(str(entry.get("id", path.stem)), str(path), caption.strip()))
    return items


def load_inputs(source: str | Path) -> list[VideoItem]:
    """The videos to process, in a fixed order (the list's order, or sorted file names for a folder)."""
    source = Path(source)
    if source.is_file():
        items = _items(_read_list(source), source.parent, str(source))
    elif source.is_dir():
        listed = [source / name for name in ("captions.jsonl", "captions.json") if (source / name).exists()]
        if listed:
            items = _items(_read_list(listed[0]), source, str(listed[0]))
        else:
            entries, missing = [], []
            for path in sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
                caption_file = path.with_suffix(".txt")
                if caption_file.exists():
                    entries.append({"video": path.name, "caption": caption_file.read_text()})
                else:
                    missing.append(path.name)
            if missing:
                raise ValueError(f"{source}: no caption for {missing}: add <stem>.txt files or a captions.jsonl "
                                 f"list of {{'video', 'caption'}}")
            items = _items(entries, source, str(source))
    else:
        raise ValueError(f"--videos {source} is neither a list file nor a folder")
    ids = [item.id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{source}: duplicate video ids {duplicates}; give each entry a unique 'id'")
    if not items:
        raise ValueError(f"{source}: no videos to process")
    return items
