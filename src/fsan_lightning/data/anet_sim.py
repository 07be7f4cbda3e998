"""The ActivityNet-scale world: the real ActivityNet Captions annotations, simulated C3D-like features.

    python -m fsan_lightning.data.anet_sim OUT_DIR [--annotations-dir DIR] [--subset N] [--seed S]
        [--workers W] [--set key=value ...]

The annotation files (train.json, val_1.json, val_2.json) are the real ones, copied record for record
(anomalies included: the readers repair or drop them as they do for the real data set). Only the video
features are simulated, one ``[T, 500]`` float32 matrix per video at ``rows_per_second`` rows per second
(default 1.875: non-overlapping 16-frame C3D windows at 30 fps), written to
``sub_activitynet_v1-3.c3d.hdf5`` under ``<vid>/c3d_features`` like the real file.

The generative model (docs/data.md, "The ActivityNet-scale world") renders, for every video, the events
its captions describe. An event is the caption's moment (annotated seconds, perturbed by an annotator
noise: the real event and the annotation disagree a little) and its *content words* (not the sentence,
not its function words). Each content word has a fixed random visual latent and a visibility drawn once
(log-normal, and a share of words with no visual trace at all); the same word in one video shares a
per-video appearance. A clip's latent state is the video's scene, a slow drift, an undescribed idle
background action where no event runs, the sum of the events that cover it (soft sigmoid edges in
seconds; overlapping events add) and temporally correlated (AR(1)) latent noise; a fixed random
``tanh`` MLP maps it to 500-d, then a per-video offset, low-rank AR(1) nuisance and white sensor noise
are added. The renderer sees per video only: its id (the seed of its randomness), its duration, and the
(start, end, content words) of its captions. It never sees GloVe, the split, the other videos or the
sentences' wording beyond their content words.

val_1 and val_2 describe the same videos: a validation video is rendered once, from the union of the
events of both files (both annotators describe the one real video).

Subsets (``subset=N``): the N training videos first in the order of a hash of the video id, and the
same share (``round(N * 4885 / 10009)``, at least 1) of val_2's videos in the same hash order, with all
their val_1 and val_2 captions; so val_1 and val_2 of a subset annotate the same videos (val_1's 32
videos that val_2 lacks are only in the full world). A video's features do not depend on the subset.

The world is cached: ``anet_sim_params.json`` (written last) holds the hash of the parameters, the
generator version and the sha256 of the three annotation files; `ensure_world` regenerates only when
that hash changes.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .synthetic import known_fields, parse_set_options
from .text import is_content, tokenize

log = logging.getLogger(__name__)

#: bump when the generator writes something else for the same parameters (invalidates caches)
GENERATOR_VERSION = 1
PARAMS_FILE = "anet_sim_params.json"
FEATURES_FILE = "sub_activitynet_v1-3.c3d.hdf5"
FEATURE_KEY = "{vid}/c3d_features"
#: world split name -> the annotation file name (the same in the source folder and the world)
SPLIT_FILES = {"train": "train.json", "val_1": "val_1.json", "val_2": "val_2.json"}
#: videos of the full files (SOURCE.md), for the proportional share of a subset
FULL_TRAIN_VIDEOS = 10009
FULL_VAL2_VIDEOS = 4885


@dataclass
class AnetSimConfig:
    """Generator parameters; all of them (and the annotation files' sha256) enter the cache hash."""

    seed: int = 0
    subset: int | None = None         # None = every video of train, val_1 and val_2
    rows_per_second: float = 1.875    # feature rows per second of video
    feature_dim: int = 500
    latent_dim: int = 64
    hidden_dim: int = 256
    map_seed: int = 2021              # the fixed parts: word latents, visibilities, the latent -> feature map
    word_scale: float = 1.0           # norm of a word's visual latent before its visibility
    visibility_sigma: float = 1.0     # log-normal sigma of a word's visibility (median 1)
    p_invisible: float = 0.25         # share of content words with no visual trace
    instance_std: float = 0.5         # per-video appearance of a word, relative to word_scale
    event_scale: float = 1.5          # norm scale of an event's latent (its words' sum / sqrt(#words))
    scene_scale: float = 1.0          # per-video scene
    context_scale: float = 0.5        # the video's topic is visible throughout: this share of the mean
                                      # of its events' latents is added to every row (the ski slope of
                                      # a skiing video), so words also show outside their moments
    idle_scale: float = 0.8           # undescribed background actions (a fixed bank of idle_actions)
    idle_actions: int = 24
    idle_mean_s: float = 40.0         # mean length of a background stretch, seconds
    drift_scale: float = 0.4          # slow random drift of the latent state
    edge_s: float = 2.0               # seconds: width of the sigmoid fade in / out of an event
    boundary_jitter: float = 0.05     # std of (real - annotated) boundary, share of the moment length
    latent_noise_std: float = 0.5     # per-dimension latent nuisance (pose, camera), through the map
    nuisance_dim: int = 32            # rank of the feature-space AR nuisance
    nuisance_std: float = 0.6
    noise_std: float = 0.8            # white per-dimension sensor noise
    noise_ar: float = 0.9             # AR(1) coefficient per row of both correlated noises
    offset_std: float = 0.3           # per-video feature offset
    extra: dict = field(default_factory=dict)  # free room, hashed with the rest

    @classmethod
    def from_dict(cls, params: dict | None) -> AnetSimConfig:
        cfg = cls(**known_fields(cls, params, "anet_sim"))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.subset is not None and (isinstance(self.subset, bool) or int(self.subset) < 2):
            raise ValueError(f"data.subset must be null (full size) or an integer >= 2, got {self.subset!r}")
        if self.rows_per_second <= 0 or self.feature_dim < 1 or self.latent_dim < 1 or self.hidden_dim < 1:
            raise ValueError("rows_per_second, feature_dim, latent_dim and hidden_dim must be positive")
        if not 0 <= self.p_invisible < 1 or not 0 <= self.noise_ar < 1:
            raise ValueError("p_invisible and noise_ar must be in [0, 1)")
        if self.edge_s <= 0 or self.idle_mean_s <= 0 or self.idle_actions < 1 or self.nuisance_dim < 1:
            raise ValueError("edge_s, idle_mean_s, idle_actions and nuisance_dim must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tag(self) -> str:
        """Folder name of this size: ``full`` or ``subset<N>``."""
        return "full" if self.subset is None else f"subset{int(self.subset)}"


def default_annotations_dir() -> Path:
    """$FSAN_SHARED_DATA/activitynet_captions, else ../shared/data/activitynet_captions beside the cwd."""
    env = os.environ.get("FSAN_SHARED_DATA")
    root = Path(env) if env else Path.cwd().parent / "shared" / "data"
    return root / "activitynet_captions"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_files(annotations_dir) -> dict[str, Path]:
    """The three annotation files of the folder; a clear error naming the folder when one is absent."""
    folder = Path(annotations_dir)
    files = {split: folder / name for split, name in SPLIT_FILES.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"ActivityNet Captions annotation files not found: {', '.join(missing)} (data.annotations_dir="
            f"{folder}; it defaults to $FSAN_SHARED_DATA/activitynet_captions or "
            "../shared/data/activitynet_captions)")
    return files


def params_hash(cfg: AnetSimConfig, source_sha: dict[str, str]) -> str:
    blob = json.dumps({"version": GENERATOR_VERSION, "params": cfg.to_dict(), "sources": source_sha},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _key(text: str) -> int:
    """A stable 64-bit integer of a string (video ids, words): the seed material of their randomness."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


# ---------------------------------------------------------------------------------------------
# reading and choosing the videos

def _load(path: Path) -> dict:
    """The JSON object of an annotation file (read once per process and file version; do not modify)."""
    st = Path(path).stat()
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=3)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> dict:
    from .readers import _load_json  # the readers' clear errors for broken JSON

    data = _load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a JSON object {{video_id: record}}")
    return data


def select_videos(train_vids, val2_vids, subset: int | None) -> tuple[list[str], list[str] | None]:
    """(train videos, val videos or None = all of val_1 and val_2) of a subset, in hash order.

    subset N: the first N training videos by `_key` and the first ``max(1, round(N * 4885 / 10009))``
    of val_2's videos (val_2's videos are all in val_1).
    """
    if subset is None:
        return sorted(train_vids), None
    n = int(subset)
    if n > len(train_vids):
        raise ValueError(f"data.subset={n} but the training file has {len(train_vids)} videos")
    train = sorted(train_vids, key=_key)[:n]
    n_val = max(1, round(n * FULL_VAL2_VIDEOS / FULL_TRAIN_VIDEOS))
    val = sorted(val2_vids, key=_key)[: min(n_val, len(val2_vids))]
    return train, val


@dataclass
class VideoSpec:
    """What the renderer may know of one video: id, duration (s) and its events (s, e, content words)."""

    vid: str
    duration: float
    events: list[tuple[float, float, tuple[str, ...]]]


def _events(path: Path, vid: str, rec: dict) -> list[tuple[float, float, tuple[str, ...]]]:
    """A record's (start, end, content words) per caption, moments ordered and clipped to the video."""
    try:
        duration = float(rec["duration"])
        out = []
        for (s, e), sentence in zip(rec["timestamps"], rec["sentences"]):
            s, e = sorted((float(s), float(e)))
            words = tuple(dict.fromkeys(w for w in tokenize(str(sentence)) if is_content(w)))
            out.append((min(max(s, 0.0), duration), min(max(e, 0.0), duration), words))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {vid}: cannot read duration/timestamps/sentences ({exc}); "
                         "check the file with python -m fsan_lightning.data.validate") from None
    return out


def video_specs(train: dict, val_1: dict, val_2: dict, train_vids, val_vids, paths) -> list[VideoSpec]:
    """Specs of the chosen videos: train ones, then val ones (the union of val_1 and val_2 events)."""
    specs = [VideoSpec(v, float(train[v]["duration"]), _events(paths["train"], v, train[v])) for v in train_vids]
    for v in val_vids:
        events, seen = [], set()
        for split, data in (("val_1", val_1), ("val_2", val_2)):
            if v in data:
                for ev in _events(paths[split], v, data[v]):
                    if ev not in seen:
                        seen.add(ev)
                        events.append(ev)
        rec = val_1.get(v) or val_2[v]
        specs.append(VideoSpec(v, float(rec["duration"]), events))
    return specs


# ---------------------------------------------------------------------------------------------
# the renderer

class Renderer:
    """The fixed random parts (word latents and visibilities, idle bank, the map) and `render`."""

    def __init__(self, cfg: AnetSimConfig):
        self.cfg = cfg
        rng = np.random.default_rng([cfg.map_seed, 0])
        k, h, d = cfg.latent_dim, cfg.hidden_dim, cfg.feature_dim
        self.idle = rng.standard_normal((cfg.idle_actions, k)) * cfg.idle_scale / np.sqrt(k)
        # pre-activations at std ~1 for a latent of norm ~2 (scene + event + noise)
        self.w1 = rng.standard_normal((k, h)) * 0.5
        self.b1 = rng.standard_normal(h) * 0.5
        self.w2 = (rng.standard_normal((h, d)) / np.sqrt(h)).astype(np.float32)
        self.nuisance = (rng.standard_normal((cfg.nuisance_dim, d)) / np.sqrt(cfg.nuisance_dim)).astype(np.float32)
        self._words: dict[str, tuple[np.ndarray, float]] = {}

    def word(self, word: str) -> tuple[np.ndarray, float]:
        """(visual latent [k] float64, visibility >= 0) of a word: a function of (map_seed, word) only."""
        got = self._words.get(word)
        if got is None:
            cfg = self.cfg
            rng = np.random.default_rng([cfg.map_seed, 1, _key(word)])
            vec = rng.standard_normal(cfg.latent_dim) * cfg.word_scale / np.sqrt(cfg.latent_dim)
            vis = float(np.exp(rng.normal(0.0, cfg.visibility_sigma)))
            if rng.random() < cfg.p_invisible:
                vis = 0.0
            got = self._words[word] = (vec, vis)
        return got

    def rows(self, duration: float) -> int:
        return max(1, int(round(duration * self.cfg.rows_per_second)))

    def render(self, spec: VideoSpec) -> np.ndarray:
        """Features ``[T, feature_dim]`` float32 of one video, T = round(duration * rows_per_second).

        Separate random streams, so that what an event changes stays local: the background (scene,
        drift, idle actions, noises, offset) from (seed, video); a word's appearance in the video from
        (seed, video, word); an event's real boundaries from (seed, video, its annotated seconds). The
        order of the captions does not matter.
        """
        cfg = self.cfg
        vkey = _key(spec.vid)
        rng = np.random.default_rng([cfg.seed, 2, vkey])
        k = cfg.latent_dim
        t_rows = self.rows(spec.duration)
        secs = (np.arange(t_rows) + 0.5) / cfg.rows_per_second  # row centres, seconds [T]
        z = np.tile(rng.standard_normal(k) * cfg.scene_scale / np.sqrt(k), (t_rows, 1))
        drift = np.cumsum(rng.standard_normal((t_rows, k)), axis=0)
        drift -= drift.mean(axis=0)
        z += drift / (np.abs(drift).max() + 1e-9) * cfg.drift_scale * 3 / np.sqrt(k)
        idle = self._idle(rng, t_rows)
        latent_noise = _ar1(rng.standard_normal((t_rows, k)) * cfg.latent_noise_std, cfg.noise_ar)
        offset = (rng.standard_normal(cfg.feature_dim) * cfg.offset_std).astype(np.float32)
        nuisance = _ar1(rng.standard_normal((t_rows, cfg.nuisance_dim), dtype=np.float32) * cfg.nuisance_std,
                        cfg.noise_ar)
        white = rng.standard_normal((t_rows, cfg.feature_dim), dtype=np.float32) * np.float32(cfg.noise_std)
        presence = np.zeros(t_rows)
        events = sorted(spec.events)
        if events:
            words = sorted({w for _, _, ws in events for w in ws})
            index = {w: i for i, w in enumerate(words)}
            table = np.zeros((max(1, len(words)), k))
            vis = np.zeros(max(1, len(words)))
            for i, w in enumerate(words):
                vec, vis[i] = self.word(w)
                # this video's appearance of the word, shared by all its events
                inst = np.random.default_rng([cfg.seed, 3, vkey, _key(w)]).standard_normal(k)
                table[i] = vec + inst * cfg.instance_std * cfg.word_scale / np.sqrt(k)
            incidence = np.zeros((len(events), table.shape[0]))
            for j, (_, _, ws) in enumerate(events):
                for w in ws:
                    incidence[j, index[w]] = 1.0 / np.sqrt(len(ws))
            latents = (incidence * vis) @ table * cfg.event_scale  # [E, k]
            alpha = self._envelopes(vkey, secs, events, spec.duration)  # [T, E]
            z += alpha @ latents + cfg.context_scale * latents.mean(axis=0)
            presence = alpha.sum(axis=1)
        z += idle * (1.0 - np.clip(presence, 0.0, 1.0))[:, None]
        z += latent_noise
        feats = np.tanh(z @ self.w1 + self.b1).astype(np.float32) @ self.w2
        feats += offset
        feats += nuisance.astype(np.float32) @ self.nuisance
        feats += white
        return feats

    def _envelopes(self, vkey: int, secs, events, duration) -> np.ndarray:
        """Soft presence ``[T, E]`` in [0, 1] of each event: the annotated moment plus annotator noise.

        A moment that starts at 0 (ends at the duration) was running before (after) the video: no
        fade at that side.
        """
        cfg = self.cfg
        starts = np.array([s for s, _, _ in events])
        ends = np.array([e for _, e, _ in events])
        jitter = np.array([np.random.default_rng([cfg.seed, 4, vkey, _key(f"{s:.3f}-{e:.3f}")]).standard_normal(2)
                           for s, e, _ in events])  # [E, 2]
        length = np.maximum(ends - starts, 1.0 / cfg.rows_per_second)
        s_real = starts + jitter[:, 0] * cfg.boundary_jitter * length
        e_real = ends + jitter[:, 1] * cfg.boundary_jitter * length
        s_real = np.where(starts <= 0, -np.inf, s_real)
        e_real = np.where(ends >= duration, np.inf, np.maximum(e_real, s_real + 1.0 / cfg.rows_per_second))
        x = secs[:, None]
        with np.errstate(over="ignore"):
            rise = 1.0 / (1.0 + np.exp(-(x - s_real) / cfg.edge_s))
            fall = 1.0 / (1.0 + np.exp(-(e_real - x) / cfg.edge_s))
        return rise * fall

    def _idle(self, rng, t_rows) -> np.ndarray:
        """Background: a piecewise-constant idle action, stretches of mean ``idle_mean_s`` seconds."""
        cfg = self.cfg
        n = 1 + rng.poisson(t_rows / (cfg.idle_mean_s * cfg.rows_per_second))
        cuts = np.sort(rng.integers(1, max(2, t_rows), size=n - 1)) if t_rows > 1 else np.zeros(0, int)
        which = rng.integers(cfg.idle_actions, size=n)
        seg = np.searchsorted(cuts, np.arange(t_rows), side="right")
        return self.idle[which[seg]]


def _ar1(eps: np.ndarray, a: float) -> np.ndarray:
    """AR(1) along axis 0 with stationary std = std(eps): ``y_t = a y_{t-1} + sqrt(1-a^2) eps_t``.

    A log-depth scan (``y[k:] += a^k y[:-k]`` for k = 1, 2, 4, ...), vectorised: [T, ...] -> [T, ...].
    """
    y = eps * np.sqrt(1 - a * a)
    y[0] = eps[0]
    k = 1
    while k < y.shape[0]:
        y[k:] += (a ** k) * y[:-k]
        k *= 2
    return y


# ---------------------------------------------------------------------------------------------
# writing the world

_WORKER: Renderer | None = None


def _init_worker(cfg_dict: dict) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = Renderer(AnetSimConfig.from_dict(cfg_dict))


def _render_in_worker(spec: VideoSpec) -> tuple[str, np.ndarray]:
    return spec.vid, _WORKER.render(spec)


def _rendered(cfg: AnetSimConfig, specs: list[VideoSpec], workers: int) -> Iterator[tuple[str, np.ndarray]]:
    if workers <= 1:
        renderer = Renderer(cfg)
        for spec in specs:
            yield spec.vid, renderer.render(spec)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg.to_dict(),)) as pool:
        yield from pool.imap(_render_in_worker, specs, chunksize=8)


def generate(out_dir, annotations_dir=None, params: dict | AnetSimConfig | None = None,
             workers: int = 1) -> dict:
    """Write the world into ``out_dir``; returns the parameters file's content.

    workers: rendering processes (the output does not depend on it).
    """
    cfg = params if isinstance(params, AnetSimConfig) else AnetSimConfig.from_dict(params)
    paths = source_files(annotations_dir or default_annotations_dir())
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).unlink(missing_ok=True)
    data = {split: _load(p) for split, p in paths.items()}
    train_vids, val_vids = select_videos(list(data["train"]), list(data["val_2"]), cfg.subset)
    if val_vids is None:
        val_vids = sorted(set(data["val_1"]) | set(data["val_2"]))
    chosen = set(val_vids)
    stats = {}
    picked = set(train_vids)
    for split, records in (("train", {v: r for v, r in data["train"].items() if v in picked}),
                           ("val_1", {v: r for v, r in data["val_1"].items() if v in chosen}),
                           ("val_2", {v: r for v, r in data["val_2"].items() if v in chosen})):
        _atomic_text(out / SPLIT_FILES[split], json.dumps(records))
        stats[split] = {"videos": len(records), "pairs": sum(len(r["sentences"]) for r in records.values())}
    specs = video_specs(data["train"], data["val_1"], data["val_2"], train_vids, val_vids, paths)
    rows = _write_features(out / FEATURES_FILE, _rendered(cfg, specs, workers))
    source_sha = {split: _sha256(p) for split, p in paths.items()}
    meta = {"hash": params_hash(cfg, source_sha), "version": GENERATOR_VERSION, "params": cfg.to_dict(),
            "sources": {split: {"path": str(p), "sha256": source_sha[split]} for split, p in paths.items()},
            "splits": stats, "videos": len(specs), "feature_rows": rows,
            "feature_bytes": rows * cfg.feature_dim * 4, "seconds": round(time.time() - started, 1),
            "workers": workers}
    _atomic_text(out / PARAMS_FILE, json.dumps(meta, indent=1))
    return meta


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_features(path: Path, items) -> int:
    """Stream ``(vid, [T, D])`` items into one HDF5 file (``<vid>/c3d_features``); returns the rows."""
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    with h5py.File(tmp, "w") as f:
        for vid, feats in items:
            f.create_dataset(FEATURE_KEY.format(vid=vid), data=feats)
            rows += feats.shape[0]
    tmp.replace(path)
    return rows


def world_dir(root, params: dict | None) -> Path:
    """Where a world of these parameters lives under ``root``: ``root/full`` or ``root/subset<N>``."""
    return Path(root) / AnetSimConfig.from_dict(params).tag()


def is_current(out_dir, annotations_dir=None, params: dict | None = None) -> bool:
    """Whether ``out_dir`` holds a complete world of these parameters and annotation files."""
    cfg = AnetSimConfig.from_dict(params)
    meta_path = Path(out_dir) / PARAMS_FILE
    if not meta_path.is_file():
        return False
    paths = source_files(annotations_dir or default_annotations_dir())
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    return meta.get("hash") == params_hash(cfg, {s: _sha256(p) for s, p in paths.items()})


def ensure_world(out_dir, annotations_dir=None, params: dict | None = None, workers: int = 1) -> bool:
    """Generate the world into ``out_dir`` unless it is current (same hash); True when it generated."""
    if is_current(out_dir, annotations_dir, params):
        return False
    log.info("generating the anet_sim world (%s) in %s", AnetSimConfig.from_dict(params).tag(), out_dir)
    meta = generate(out_dir, annotations_dir, params, workers=workers)
    log.info("anet_sim: %d videos, %d feature rows (%.2f GB) in %.1f s", meta["videos"], meta["feature_rows"],
             meta["feature_bytes"] / 1e9, meta["seconds"])
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.anet_sim",
                                description="Write the ActivityNet-scale world (real annotations, simulated features).")
    p.add_argument("out_dir")
    p.add_argument("--annotations-dir", default=None,
                   help="folder of train.json, val_1.json, val_2.json (default $FSAN_SHARED_DATA/activitynet_captions)")
    p.add_argument("--subset", type=int, default=None, help="N training videos (default: the full size)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="rendering processes (the output does not depend on it)")
    p.add_argument("--force", action="store_true", help="regenerate even when the cached world is current")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any AnetSimConfig field")
    args = p.parse_args(argv)
    params = parse_set_options(p, args.set)
    if args.subset is not None:
        params["subset"] = args.subset
    if args.seed is not None:
        params["seed"] = args.seed
    try:
        if args.force or not is_current(args.out_dir, args.annotations_dir, params):
            meta = generate(args.out_dir, args.annotations_dir, params, workers=args.workers)
        else:
            meta = json.loads((Path(args.out_dir) / PARAMS_FILE).read_text())
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"out_dir": str(args.out_dir), "hash": meta["hash"], "splits": meta["splits"],
                      "videos": meta["videos"], "feature_rows": meta["feature_rows"], "seconds": meta["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
