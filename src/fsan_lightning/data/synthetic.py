"""The synthetic world: a compositional, weakly-supervisable grounding data set in the real formats.

    python -m fsan_lightning.data.synthetic OUT_DIR [--format activitynet|didemo|charades] [--seed N]
        [--set key=value ...]

A video is a sequence of events separated by background. Each event composes latent factors (an
action verb, an object noun, an attribute adjective); the whole video has a scene and an actor.
Clip features (``feature_dim``, 500 by default, like C3D after PCA) are a FIXED random non-linear map
(``tanh`` MLP, seeded by ``map_seed``) of the per-row latent state, plus temporally correlated noise
and a per-video offset; events fade in and out (soft edges). The background is not empty: undescribed
"idle" actions and a slowly drifting state fill it. Within a video the events share some but not all
factors with each other (same object, another verb; same verb, another colour...), so no single word
grounds a sentence. Sentences are templated English with real words (so GloVe applies), one event
each, with varied templates, subjects and function words; moment boundaries carry annotator noise.

With ``repeat_fraction`` > 0 (0 by default: the embedded world), that share of the videos shows one event
twice: two events with the same verb, object and attribute (and the same appearance), told apart only by
their order, which their sentences name ("... for the first time", "later, ... again"). There the words
alone ground either occurrence; where a sentence happens depends on the rest of the video, which is what
the interaction (ICIM) exists to read (issue 19's context world).

Files written (the real formats, readable by `fsan_lightning.data.readers`):
- activitynet: train.json, val_1.json, val_2.json, sub_activitynet_v1-3.c3d.hdf5 (``<vid>/c3d_features``)
- didemo: {train,val,test}_data.json (4 annotators, chunk indices), didemo_features.hdf5 with 6 rows
  per video (the mean of each 5-second chunk; the 6th row is zero for 5-chunk videos)
- charades: charades_sta_{train,val,test}.txt, Charades_v1_{train,test}.csv (val videos are in the
  train csv), charades_features.hdf5
plus ``synthetic_params.json`` (the parameters and their hash; written last, so its presence means
the world is complete), and with ``repeat_fraction`` > 0 (activitynet format) ``repeated_events.json``:
per annotation file, the query id of each repeated event -> its twin's (for breakdowns; never read by
training).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: bump when the generator changes what it writes for the same parameters (invalidates caches)
GENERATOR_VERSION = 1
PARAMS_FILE = "synthetic_params.json"
#: with repeat_fraction > 0: per annotation file, each repeated event's query id -> its twin's
REPEATS_FILE = "repeated_events.json"
FORMATS = ("activitynet", "didemo", "charades")

# (base, 3rd person, -ing, past participle)
VERBS = [
    ("slice", "slices", "slicing", "sliced"), ("wash", "washes", "washing", "washed"),
    ("throw", "throws", "throwing", "thrown"), ("open", "opens", "opening", "opened"),
    ("paint", "paints", "painting", "painted"), ("carry", "carries", "carrying", "carried"),
    ("kick", "kicks", "kicking", "kicked"), ("fold", "folds", "folding", "folded"),
    ("push", "pushes", "pushing", "pushed"), ("lift", "lifts", "lifting", "lifted"),
    ("clean", "cleans", "cleaning", "cleaned"), ("drop", "drops", "dropping", "dropped"),
    ("shake", "shakes", "shaking", "shaken"), ("catch", "catches", "catching", "caught"),
    ("repair", "repairs", "repairing", "repaired"), ("roll", "rolls", "rolling", "rolled"),
]
OBJECTS = ["tomato", "ball", "box", "door", "bottle", "chair", "shirt", "book", "bucket", "guitar",
           "bike", "towel", "cup", "basket", "hat", "kite"]
ATTRIBUTES = ["red", "blue", "green", "yellow", "black", "white", "small", "large", "wooden", "old",
              "striped", "shiny"]
# (noun, pronoun)
ACTORS = [("man", "he"), ("woman", "she"), ("boy", "he"), ("girl", "she"), ("person", "they"),
          ("child", "they"), ("lady", "she"), ("guy", "he")]
SCENES = ["kitchen", "garden", "street", "beach", "park", "garage", "gym", "yard", "field", "office"]
IDLE_ACTIONS = 6  # undescribed background actions (walking around, talking, standing...)

TEMPLATES = [
    "{subj} is {ing} a {adj}{obj}",
    "{subj} {s} the {adj}{obj}",
    "{subj} {s} a {adj}{obj} in the {scene}",
    "then {subj} starts {ing} the {adj}{obj}",
    "a {adj}{obj} is {pp} by {subj}",
    "the {adj}{obj} is being {pp} in the {scene}",
    "after that, {subj} {s} the {adj}{obj} again",
    "we see {subj} {ing} a {adj}{obj}",
    "{subj} continues to {base} the {adj}{obj}",
    "next {subj} picks up the {adj}{obj} and {s} it",
    "in the {scene}, {subj} is seen {ing} a {adj}{obj}",
    "{subj} {s} a {obj} that is {adj_bare}",
]


def known_fields(cls, params: dict | None, what: str) -> dict:
    """A copy of ``params``; ValueError listing the valid names when one is not a field of dataclass ``cls``."""
    params = dict(params or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"unknown {what} parameters {unknown}; known: {sorted(names)}")
    return params


@dataclass
class SyntheticConfig:
    """All generator parameters (the DataModule's ``synthetic`` dict overrides any of them)."""

    seed: int = 0
    # "shared": one random stream draws train, then val, then test (the embedded world as recorded);
    # "independent": every video (and its sentences) has its own stream seeded by (seed, split, index),
    # so val and test do not depend on train_videos and training sets of different sizes are nested
    # (learning curves; activitynet and charades formats)
    split_streams: str = "shared"
    train_videos: int = 500
    val_videos: int = 135
    test_videos: int = 135
    feature_dim: int = 500
    latent_dim: int = 32
    hidden_dim: int = 128
    map_seed: int = 12345            # the fixed latent -> feature map
    min_rows: int = 40               # feature rows per video (ActivityNet/Charades formats)
    max_rows: int = 200
    seconds_per_row: float = 1.0
    min_events: int = 2
    max_events: int = 4
    moment_beta: tuple[float, float] = (2.5, 5.0)   # event length / video length ~ Beta (median ~0.32)
    min_event_rows: int = 3
    max_coverage: float = 0.85       # events cover at most this share of the video
    n_verbs: int = 12
    n_objects: int = 12
    n_attributes: int = 10
    p_share: float = 0.85            # an extra event shares factors with the video's first event...
    p_one_change: float = 0.7        # ...differing in exactly one factor (else in two)
    p_omit_attribute: float = 0.15   # drop the adjective when the event stays unique without it
    factor_scale: float = 1.0        # norm scale of the verb and object latent vectors
    attribute_scale: float = 0.6     # attributes (colour, size) are visually subtler
    instance_std: float = 1.0        # per-video variation of each factor (this video's red tomato),
                                     # relative to the factor's scale
    scene_scale: float = 1.0
    actor_scale: float = 0.7
    idle_scale: float = 0.9          # undescribed background actions
    drift_scale: float = 0.5         # slowly drifting background state
    edge_width: float = 1.5          # rows: width of the sigmoid fade in/out of events
    latent_noise_std: float = 0.6    # per-dimension nuisance in the latent state (pose, camera, light),
                                     # through the same map as the signal: the noise that matters
    noise_std: float = 1.0           # per-dimension feature noise (sensor-like, after the map)
    noise_ar: float = 0.8            # AR(1) coefficient of both noises across rows (slow nuisance)
    offset_std: float = 0.3          # per-video feature offset (camera, lighting)
    annotation_jitter: float = 0.08  # std of boundary noise, as a share of the event length
    didemo_p_five_chunks: float = 0.15
    didemo_annotators: int = 4
    didemo_p_annotator_shift: float = 0.25
    repeat_fraction: float = 0.0     # share of videos with one event shown twice (ordinal sentences)
    extra: dict = field(default_factory=dict)  # free room, hashed with the rest

    @classmethod
    def from_dict(cls, params: dict | None) -> SyntheticConfig:
        params = known_fields(cls, params, "synthetic world")
        if "moment_beta" in params:
            params["moment_beta"] = tuple(float(x) for x in params["moment_beta"])
        cfg = cls(**params)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not (0 < self.n_verbs <= len(VERBS) and 0 < self.n_objects <= len(OBJECTS)
                and 0 < self.n_attributes <= len(ATTRIBUTES)):
            raise ValueError(f"n_verbs/n_objects/n_attributes must be within the word lists "
                             f"({len(VERBS)}/{len(OBJECTS)}/{len(ATTRIBUTES)})")
        if not 1 <= self.min_events <= self.max_events:
            raise ValueError("need 1 <= min_events <= max_events")
        if not 0 < self.min_rows <= self.max_rows:
            raise ValueError("need 0 < min_rows <= max_rows")
        if self.max_events * self.min_event_rows > self.max_coverage * self.min_rows:
            raise ValueError("min_rows too small for max_events events of min_event_rows rows")
        if self.split_streams not in ("shared", "independent"):
            raise ValueError(f"split_streams must be 'shared' or 'independent', got {self.split_streams!r}")
        if min(self.train_videos, self.val_videos, self.test_videos) < 1:
            raise ValueError("every split needs at least one video")
        if not 0.0 <= self.repeat_fraction <= 1.0:
            raise ValueError(f"repeat_fraction must be within [0, 1], got {self.repeat_fraction}")
        if self.repeat_fraction > 0 and self.max_events < 2:
            raise ValueError("repeat_fraction > 0 needs max_events >= 2 (a repeated event is two events)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["moment_beta"] = list(d["moment_beta"])
        for name, default in LATER_FIELDS.items():  # so that the worlds made before them keep their hash
            if d[name] == default:
                del d[name]
        return d


#: fields added after worlds were cached and recorded: written (and hashed) only when not at their default
LATER_FIELDS = {"repeat_fraction": 0.0}


def params_hash(cfg: SyntheticConfig, fmt: str) -> str:
    blob = json.dumps({"format": fmt, "version": GENERATOR_VERSION, "params": cfg.to_dict()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the world

@dataclass
class Event:
    verb: int
    obj: int
    attr: int
    start: int  # first row
    end: int    # last row + 1
    occurrence: int = 0  # 0: the video's only event with its factors; 1 / 2: first / second of a repeat


@dataclass
class Video:
    vid: str
    features: np.ndarray  # [T, D] float32
    events: list[Event]
    actor: int
    scene: int


class World:
    """The fixed parts of a world: factor latents and the latent -> feature map."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.map_seed)
        k = cfg.latent_dim

        def table(n, scale):
            return (rng.standard_normal((n, k)) * scale / np.sqrt(k)).astype(np.float64)

        self.verb_z = table(len(VERBS), cfg.factor_scale)
        self.obj_z = table(len(OBJECTS), cfg.factor_scale)
        self.attr_z = table(len(ATTRIBUTES), cfg.attribute_scale)
        self.actor_z = table(len(ACTORS), cfg.actor_scale)
        self.scene_z = table(len(SCENES), cfg.scene_scale)
        self.idle_z = table(IDLE_ACTIONS, cfg.idle_scale)
        # each latent part has norm ~its scale and a row sums ~6 parts: entries of std 0.5 put the
        # pre-activations at std ~1, where tanh is neither linear nor saturated
        self.w1 = rng.standard_normal((k, cfg.hidden_dim)) * 0.5
        self.b1 = rng.standard_normal(cfg.hidden_dim) * 0.5
        self.w2 = rng.standard_normal((cfg.hidden_dim, cfg.feature_dim)) / np.sqrt(cfg.hidden_dim)

    def features(self, z: np.ndarray) -> np.ndarray:
        """Latent rows [T, k] -> clean features [T, D] (the fixed non-linear map)."""
        return np.tanh(z @ self.w1 + self.b1) @ self.w2

    def make_video(self, rng: np.random.Generator, vid: str, rows: int) -> Video:
        cfg = self.cfg
        actor, scene = int(rng.integers(len(ACTORS))), int(rng.integers(len(SCENES)))
        events = self._events(rng, rows)
        t = np.arange(rows, dtype=np.float64)[:, None]
        z = np.tile(self.actor_z[actor] + self.scene_z[scene], (rows, 1))
        # background: an idle action per stretch of rows + a slow random drift
        idle = self._idle(rng, rows)
        z += idle
        drift = np.cumsum(rng.standard_normal((rows, cfg.latent_dim)), axis=0)
        drift -= drift.mean(axis=0)
        z += drift / (np.abs(drift).max() + 1e-9) * cfg.drift_scale / np.sqrt(cfg.latent_dim) * 3
        presence = np.zeros((rows, 1))
        k = cfg.latent_dim
        instance = {}  # one appearance per factor value and video, shared by its events

        def factor(kind, table, i, scale):
            if (kind, i) not in instance:
                instance[kind, i] = table[i] + rng.standard_normal(k) * cfg.instance_std * scale / np.sqrt(k)
            return instance[kind, i]

        for ev in events:
            w = cfg.edge_width
            alpha = 1 / (1 + np.exp(-(t - ev.start + 0.5) / w)) * 1 / (1 + np.exp(-(ev.end - 0.5 - t) / w))
            z += alpha * (factor("v", self.verb_z, ev.verb, cfg.factor_scale)
                          + factor("o", self.obj_z, ev.obj, cfg.factor_scale)
                          + factor("a", self.attr_z, ev.attr, cfg.attribute_scale))
            presence += alpha
        # the idle action fades while an event runs
        z -= np.clip(presence, 0, 1) * idle
        z += self._ar(rng, rows, cfg.latent_dim, cfg.latent_noise_std)
        feats = self.features(z)
        feats += rng.standard_normal(cfg.feature_dim) * cfg.offset_std
        feats += self._ar(rng, rows, cfg.feature_dim, cfg.noise_std)
        return Video(vid, feats.astype(np.float32), events, actor, scene)

    def _idle(self, rng, rows):
        z = np.zeros((rows, self.cfg.latent_dim))
        cuts = np.sort(rng.choice(np.arange(1, rows), size=min(rows - 1, int(rng.integers(1, 4))),
                                  replace=False))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, rows]):
            z[a:b] = self.idle_z[rng.integers(IDLE_ACTIONS)]
        return z

    def _ar(self, rng, rows, dim, std):
        """AR(1) noise across rows with coefficient noise_ar and stationary std ``std``: [rows, dim]."""
        ar = self.cfg.noise_ar
        eps = rng.standard_normal((rows, dim)) * std
        out = np.empty_like(eps)
        out[0] = eps[0]
        c = np.sqrt(1 - ar ** 2)
        for i in range(1, rows):
            out[i] = ar * out[i - 1] + c * eps[i]
        return out

    def _factors(self, rng, n):
        """n distinct (verb, obj, attr) triples; extra ones share 1-2 factors with the first."""
        cfg = self.cfg
        sizes = (cfg.n_verbs, cfg.n_objects, cfg.n_attributes)
        base = tuple(int(rng.integers(s)) for s in sizes)
        out = [base]
        while len(out) < n:
            if rng.random() < cfg.p_share:
                new = list(base)
                changes = 1 if rng.random() < cfg.p_one_change else 2
                for f in rng.choice(3, size=changes, replace=False):
                    new[f] = int((new[f] + rng.integers(1, sizes[f])) % sizes[f])
                cand = tuple(new)
            else:
                cand = tuple(int(rng.integers(s)) for s in sizes)
            if cand not in out:
                out.append(cand)
        return out

    def _events(self, rng, rows) -> list[Event]:
        cfg = self.cfg
        n = int(rng.integers(cfg.min_events, cfg.max_events + 1))
        lengths = np.maximum(cfg.min_event_rows,
                             np.round(rng.beta(*cfg.moment_beta, size=n) * rows)).astype(int)
        cap = int(cfg.max_coverage * rows)
        while lengths.sum() > cap:
            lengths = np.maximum(cfg.min_event_rows, (lengths * 0.9).astype(int))
        gaps = np.floor(rng.dirichlet(np.ones(n + 1)) * (rows - lengths.sum())).astype(int)
        factors = self._factors(rng, n)
        occurrence = [0] * n
        # drawn only when asked, so that the worlds without repeats keep their random stream
        if cfg.repeat_fraction > 0 and n >= 2 and rng.random() < cfg.repeat_fraction:
            first, second = sorted(int(i) for i in rng.choice(n, size=2, replace=False))
            factors[second] = factors[first]
            occurrence[first], occurrence[second] = 1, 2
        events, pos = [], 0
        for (v, o, a), length, gap, occ in zip(factors, lengths, gaps, occurrence):
            pos += gap
            events.append(Event(v, o, a, int(pos), int(pos + length), occ))
            pos += length
        return events


ORDINAL_TEMPLATES = {
    1: ["{subj} {s} the {adj}{obj} for the first time",
        "first, {subj} {s} a {adj}{obj}",
        "{subj} is {ing} the {adj}{obj} for the first time",
        "the first time, {subj} {s} the {adj}{obj} in the {scene}"],
    2: ["{subj} {s} the {adj}{obj} for the second time",
        "later, {subj} {s} the {adj}{obj} once more",
        "{subj} is {ing} the {adj}{obj} for the second time",
        "the second time, {subj} {s} the {adj}{obj} in the {scene}"],
}
"""Sentences of a repeated event (``Event.occurrence`` 1 / 2): the same words but the order words."""


def describe(rng: np.random.Generator, video: Video, k: int, cfg: SyntheticConfig) -> str:
    """One templated English sentence for event k of the video."""
    ev = video.events[k]
    noun, pronoun = ACTORS[video.actor]
    base, s, ing, pp = VERBS[ev.verb]
    others = [(e.verb, e.obj) for i, e in enumerate(video.events) if i != k]
    omit = (ev.verb, ev.obj) not in others and rng.random() < cfg.p_omit_attribute
    adj = ATTRIBUTES[ev.attr]
    subj = [f"a {noun}", f"the {noun}", "someone", pronoun if pronoun != "they" else f"the {noun}"][
        int(rng.integers(4))]
    pool = ORDINAL_TEMPLATES[ev.occurrence] if ev.occurrence else TEMPLATES
    template = pool[int(rng.integers(len(pool)))]
    if omit and "{adj_bare}" in template:
        template = TEMPLATES[1]
    text = template.format(subj=subj, base=base, s=s, ing=ing, pp=pp, obj=OBJECTS[ev.obj],
                           adj="" if omit else adj + " ", adj_bare=adj, scene=SCENES[video.scene])
    text = text[0].upper() + text[1:]
    return text + ("." if rng.random() < 0.8 else "")


# ---------------------------------------------------------------------------------------------
# writers

def _split_videos(world: World, rng, cfg, split: str, n: int, rows_range, streams=None) -> list[Video]:
    """``n`` videos from ``rng``, or video i from ``streams[i]`` (independent streams)."""
    if streams is not None:
        return [world.make_video(r, f"v_syn_{split}{i:05d}", int(r.integers(rows_range[0], rows_range[1] + 1)))
                for i, r in enumerate(streams)]
    return [world.make_video(rng, f"v_syn_{split}{i:05d}", int(rng.integers(rows_range[0], rows_range[1] + 1)))
            for i in range(n)]


def _moment_seconds(rng, ev: Event, duration: float, spr: float, jitter: float) -> tuple[float, float]:
    length = (ev.end - ev.start) * spr
    s = ev.start * spr + rng.normal(0, jitter * length)
    e = ev.end * spr + rng.normal(0, jitter * length)
    s = float(np.clip(round(s, 2), 0, duration))
    e = float(np.clip(round(e, 2), 0, duration))
    if e - s < spr:  # keep the noise from collapsing a moment
        s, e = ev.start * spr, min(ev.end * spr, duration)
    return s, e


def _write_h5(path: Path, feats: dict[str, np.ndarray]) -> None:
    import h5py

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        for vid, x in feats.items():
            f.create_dataset(f"{vid}/c3d_features", data=x)
    tmp.replace(path)


def generate(out_dir, fmt: str = "activitynet", params: dict | SyntheticConfig | None = None) -> dict:
    """Generate the world into ``out_dir`` in format ``fmt``; returns the parameters file's content."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    cfg = params if isinstance(params, SyntheticConfig) else SyntheticConfig.from_dict(params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).unlink(missing_ok=True)
    world = World(cfg)
    rng = np.random.default_rng(cfg.seed)
    spr = cfg.seconds_per_row
    splits = {"train": cfg.train_videos, "val": cfg.val_videos, "test": cfg.test_videos}
    feats: dict[str, np.ndarray] = {}
    stats = {}
    independent = cfg.split_streams == "independent"
    if cfg.repeat_fraction > 0 and fmt != "activitynet":
        raise ValueError(f"repeat_fraction > 0 is available for the activitynet format only, got {fmt!r}")
    (out / REPEATS_FILE).unlink(missing_ok=True)
    twins: dict[str, dict[str, str]] = {}
    if fmt == "didemo":
        if independent:
            raise ValueError("split_streams='independent' is not available for the didemo format")
        _write_didemo(out, world, rng, cfg, splits, feats, stats)
    else:
        for split_index, (split, n) in enumerate(splits.items()):
            streams = [np.random.default_rng([cfg.seed, split_index, i]) for i in range(n)] if independent else None
            videos = _split_videos(world, rng, cfg, split, n, (cfg.min_rows, cfg.max_rows), streams)
            records = []
            for i, v in enumerate(videos):
                r = streams[i] if independent else rng
                duration = round(v.features.shape[0] * spr, 2)
                feats[v.vid] = v.features
                for k, ev in enumerate(v.events):
                    records.append((v.vid, duration, _moment_seconds(r, ev, duration, spr,
                                                                     cfg.annotation_jitter),
                                    describe(r, v, k, cfg)))
                occ = [e.occurrence for e in v.events]
                if 1 in occ:  # the activitynet reader's query ids: "<vid>#<sentence index>"
                    a, b = f"{v.vid}#{occ.index(1)}", f"{v.vid}#{occ.index(2)}"
                    twins.setdefault(ANNOTATION_FILES[split], {}).update({a: b, b: a})
            stats[split] = {"videos": len(videos), "queries": len(records)}
            if fmt == "activitynet":
                _write_activitynet(out / ANNOTATION_FILES[split], records)
            else:
                _write_charades(out, split, records)
        _write_h5(out / ("sub_activitynet_v1-3.c3d.hdf5" if fmt == "activitynet"
                         else "charades_features.hdf5"), feats)
    if cfg.repeat_fraction > 0:
        (out / REPEATS_FILE).write_text(json.dumps(twins, indent=0, sort_keys=True))
    meta = {"format": fmt, "hash": params_hash(cfg, fmt), "version": GENERATOR_VERSION,
            "params": cfg.to_dict(), "splits": stats}
    (out / PARAMS_FILE).write_text(json.dumps(meta, indent=1))
    return meta


ANNOTATION_FILES = {"train": "train.json", "val": "val_1.json", "test": "val_2.json"}
"""The activitynet format's annotation file of each split."""


def _write_activitynet(path: Path, records) -> None:
    data: dict = {}
    for vid, duration, (s, e), text in records:
        rec = data.setdefault(vid, {"duration": duration, "timestamps": [], "sentences": []})
        # like the real files: every sentence after a video's first starts with a space
        rec["timestamps"].append([s, e])
        rec["sentences"].append((" " if rec["sentences"] else "") + text)
    path.write_text(json.dumps(data))


def _write_charades(out: Path, split: str, records) -> None:
    lines = [f"{vid} {s:.1f} {e:.1f}##{text}" for vid, _, (s, e), text in records]
    (out / f"charades_sta_{split}.txt").write_text("\n".join(lines) + "\n")
    csv_name = "Charades_v1_test.csv" if split == "test" else "Charades_v1_train.csv"
    durations = dict.fromkeys((vid, d) for vid, d, _, _ in records)
    mode = "a" if split == "val" else "w"
    with open(out / csv_name, mode) as f:
        if mode == "w":
            f.write("id,scene,length\n")
        f.writelines(f"{vid},synthetic,{d:.2f}\n" for vid, d in durations)


def _write_didemo(out: Path, world: World, rng, cfg: SyntheticConfig, splits, feats, stats) -> None:
    """DiDeMo: 25- or 30-second videos; features = the mean of each 5-second chunk (6 rows)."""
    rows_per_chunk = max(1, round(5.0 / cfg.seconds_per_row))
    aid = 0
    for split, n in splits.items():
        entries = []
        for i in range(n):
            nseg = 5 if rng.random() < cfg.didemo_p_five_chunks else 6
            v = world.make_video(rng, f"syn{split}{i:05d}", nseg * rows_per_chunk)
            chunks = np.zeros((6, cfg.feature_dim), dtype=np.float32)
            chunks[:nseg] = v.features.reshape(nseg, rows_per_chunk, -1).mean(axis=1)
            feats[v.vid] = chunks
            ext = [".mp4", ".mov", ".avi"][i % 3]
            for k, ev in enumerate(v.events):
                # chunks the event covers for at least half a chunk (at least one chunk)
                cover = [c for c in range(nseg)
                         if min(ev.end, (c + 1) * rows_per_chunk) - max(ev.start, c * rows_per_chunk)
                         >= rows_per_chunk / 2]
                s, e = (min(cover), max(cover)) if cover else ((ev.start // rows_per_chunk,) * 2)
                times = []
                for _ in range(cfg.didemo_annotators):
                    a, b = s, e
                    if rng.random() < cfg.didemo_p_annotator_shift:
                        if rng.random() < 0.5:
                            a = int(np.clip(a + rng.choice([-1, 1]), 0, b))
                        else:
                            b = int(np.clip(b + rng.choice([-1, 1]), a, nseg - 1))
                    times.append([int(a), int(b)])
                entries.append({"annotation_id": aid, "description": describe(rng, v, k, cfg),
                                "video": v.vid + ext, "num_segments": nseg, "times": times,
                                "dl_link": ""})
                aid += 1
        stats[split] = {"videos": n, "queries": len(entries)}
        (out / f"{split}_data.json").write_text(json.dumps(entries))
    _write_h5(out / "didemo_features.hdf5", feats)


def ensure_world(out_dir, params: dict | None = None, fmt: str = "activitynet") -> bool:
    """Generate the world into out_dir unless one with the same parameters (hash) is there.

    Returns True when it generated.
    """
    cfg = SyntheticConfig.from_dict(params)
    meta_path = Path(out_dir) / PARAMS_FILE
    if meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("hash") == params_hash(cfg, fmt):
                return False
        except json.JSONDecodeError:
            pass
    generate(out_dir, fmt, cfg)
    return True


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_options(parser: argparse.ArgumentParser, items: list[str]) -> dict:
    """``--set KEY=VALUE`` options -> a parameter dict (JSON values where they parse, else strings)."""
    params = {}
    for item in items:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k] = _parse_value(v)
    return params


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsan_lightning.data.synthetic",
                                description="Write the synthetic grounding world in a real data format.")
    p.add_argument("out_dir")
    p.add_argument("--format", default="activitynet", choices=FORMATS)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any SyntheticConfig field, e.g. --set train_videos=100 --set noise_std=0.8")
    args = p.parse_args(argv)
    params = parse_set_options(p, args.set)
    if args.seed is not None:
        params["seed"] = args.seed
    meta = generate(args.out_dir, args.format, params)
    print(json.dumps({"out_dir": str(args.out_dir), "format": args.format, "hash": meta["hash"],
                      "splits": meta["splits"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
