"""Download the real VideoRefer-Bench from the Hub (``DAMO-NLP-SG/VideoRefer-Bench``) and lay it out for the runners.

Usage::

    python -m bench.fetch_bench --out eval [--davis /data/DAVIS] [--mevis /data/MeViS] [--revision main]

Result (the official layout)::

    eval/VideoRefer-Bench-D/VideoRefer-Bench-D.json
    eval/VideoRefer-Bench-D/Panda-70M-part/*.mp4        (unzipped from Panda-70M-part.zip)
    eval/VideoRefer-Bench-Q/VideoRefer-Bench-Q.json
    eval/VideoRefer-Bench-Q/DAVIS/JPEGImages/480p/...   (link to your DAVIS 2017 copy: --davis)
    eval/VideoRefer-Bench-Q/MeViS/valid_u/JPEGImages/...(link to your MeViS copy: --mevis)

Bench-Q's frames come from DAVIS 2017 and MeViS, which are not redistributed on the Hub: download them from
https://davischallenge.org/davis2017/code.html and https://codalab.lisn.upsaclay.fr/competitions/15094.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

REPO_ID = "DAMO-NLP-SG/VideoRefer-Bench"


def download(cache: Path, revision: str | None) -> Path:
    """``snapshot_download`` the dataset repo into ``cache``; a clear SystemExit when the Hub is unreachable."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(REPO_ID, repo_type="dataset", revision=revision, local_dir=cache))
    except OSError as err:  # the Hub's errors (offline, unreachable, not found, gated, HTTP) are all OSErrors
        raise SystemExit(
            f"could not download {REPO_ID} from the Hugging Face Hub ({type(err).__name__}: {err}).\n"
            "This step needs network access to huggingface.co (or HF_ENDPOINT pointing at a mirror). "
            f"Alternatively download the files by hand into {cache} and rerun with --skip-download."
        ) from err


def find_one(root: Path, name: str) -> Path:
    """The file called ``name`` anywhere in the snapshot (robust to the repo reorganising its folders)."""
    matches = sorted(p for p in root.rglob(name) if ".cache" not in p.parts)
    if not matches:
        raise SystemExit(f"{name} not found in {root}; the dataset layout may have changed")
    return matches[0]


def unzip_videos(archive: Path, target: Path) -> None:
    """Extract ``Panda-70M-part.zip`` so that the videos end up directly in ``target``."""
    if target.is_dir() and any(target.iterdir()):
        print(f"[fetch] {target} already populated, not unzipping again")
        return
    staging = target.with_name(target.name + ".unzip")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
    # The zip may hold the videos at its top level or inside one folder (e.g. Panda-70M-part/).
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(source), str(target))
    shutil.rmtree(staging, ignore_errors=True)


def link(source: Path | None, target: Path, what: str) -> None:
    """Symlink a local DAVIS/MeViS copy into the Bench-Q folder, or say what is missing."""
    if source is None:
        if not target.exists():
            print(f"[fetch] {what} frames missing: put them at {target} (or rerun with the option for it)")
        return
    if not source.is_dir():
        raise SystemExit(f"{what} folder not found: {source}")
    if target.is_symlink() or target.exists():
        print(f"[fetch] {target} exists, leaving it")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="eval", help="folder that receives VideoRefer-Bench-D/ and -Q/")
    parser.add_argument("--revision", help="dataset revision (branch, tag or commit) for reproducibility")
    parser.add_argument("--davis", type=Path, help="local DAVIS folder (the one that contains JPEGImages/)")
    parser.add_argument("--mevis", type=Path, help="local MeViS folder (the one that contains valid_u/)")
    parser.add_argument("--skip-download", action="store_true", help="use files already in OUT/.hub")
    args = parser.parse_args(argv)

    out = Path(args.out)
    cache = out / ".hub"
    snapshot = cache if args.skip_download else download(cache, args.revision)
    bench_d, bench_q = out / "VideoRefer-Bench-D", out / "VideoRefer-Bench-Q"
    bench_d.mkdir(parents=True, exist_ok=True)
    bench_q.mkdir(parents=True, exist_ok=True)
    shutil.copy2(find_one(snapshot, "VideoRefer-Bench-D.json"), bench_d / "VideoRefer-Bench-D.json")
    shutil.copy2(find_one(snapshot, "VideoRefer-Bench-Q.json"), bench_q / "VideoRefer-Bench-Q.json")
    unzip_videos(find_one(snapshot, "Panda-70M-part.zip"), bench_d / "Panda-70M-part")
    link(args.davis, bench_q / "DAVIS", "DAVIS")
    link(args.mevis, bench_q / "MeViS", "MeViS")
    print(f"[fetch] ready: {bench_d} and {bench_q}\n"
          f"  python -m bench.bench_d run --bench-dir {bench_d} --model ... --output preds_d.jsonl\n"
          f"  python -m bench.bench_q run --bench-dir {bench_q} --model ... --output preds_q.jsonl")


if __name__ == "__main__":
    main()
