"""`GroundingDataModule`: reads, validates and serves one grounding data set (Lightning side).

Constructor arguments are the Hydra keys ``data.<name>``. ``prepare_data`` generates the synthetic
world or the ActivityNet-scale world (``anet_sim``; rank 0); ``setup`` reads every split, runs the full feature check (every row of every video of
the checked splits, `fsan_lightning.data.feature_check`, cached), builds the vocabulary from the
training split and the GloVe matrix, and counts every repaired/dropped record (``report``,
``write_report``), all before any training step.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from fsan_lightning.data.clip_cache import ClipCache
from fsan_lightning.data.dataset import EpochSampler, GroundingDataset, collate
from fsan_lightning.data.feature_check import DURATION_TOLERANCE, FeatureCheckError, cached_check, video_needs
from fsan_lightning.data.features import (
    DEFAULT_KEY_TEMPLATE,
    MissingFeaturesError,
    missing_features_message,
    open_feature_store,
)
from fsan_lightning.data.own import own_queries, read_descriptions, split_descriptions
from fsan_lightning.data.provenance import read_projection, read_provenance, recorded_durations
from fsan_lightning.data.readers import DATASET_DEFAULTS, DATASETS, DIDEMO_CHUNK_S, read_annotations
from fsan_lightning.data.records import DataReport, Query
from fsan_lightning.data import anet_sim as anet_world
from fsan_lightning.data.synthetic import PARAMS_FILE, ensure_world
from fsan_lightning.data.text import Vocab, build_embeddings

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_SYNTHETIC_DIR = ".data_cache/synthetic"
DEFAULT_ANET_SIM_DIR = ".data_cache/anet_sim"


class GroundingDataModule(pl.LightningDataModule):
    """One data set's splits, features and text, as DataLoaders of the batch of docs/architecture.md.

    dataset: "activitynet" | "didemo" | "charades" | "synthetic" | "anet_sim" | "own" (own videos: train_file is the
        description file of `fsan_lightning.data.own`, split by video into train / val / test with
        ``val_fraction`` / ``test_fraction``; durations absent from it come from the feature file).
    data_dir: folder of the files (synthetic: where the world is generated; default .data_cache/synthetic;
        anet_sim: the root under which the world of each size lives, ``<data_dir>/full`` or
        ``<data_dir>/subset<N>``).
    train_file, val_file, test_file, features: relative to data_dir unless absolute; None = the
        dataset's default (ActivityNet: train.json / val_1.json / val_2.json /
        sub_activitynet_v1-3.c3d.hdf5). Charades has no validation file: val None holds out
        ``val_fraction`` of the training videos (chosen by a hash of the video id, seed-independent).
    feature_key: HDF5 key template; durations: Charades csv files (default Charades_v1_{train,test}.csv).
    num_clips: Nv (DiDeMo: the chunk rows are the clips, Nv must be >= num_segments, e.g. 6).
    max_tokens: tokens kept per sentence. glove: None = kumo GloVe 6B 50-d, else a GloVe text file.
    min_word_count: training-split count for a word to enter the vocabulary.
    missing_features: "error" (default) or "skip" (drop their queries, counted in the report).
    bad_features: "error" (default) or "skip": videos whose features are unusable (NaN/inf, not 2-D,
        wrong width, zero rows, fewer rows than DiDeMo chunks); skip drops their queries, counted per
        reason (``bad_features_<kind>``) in the report.
    duration_tolerance: relative gap between the annotated duration and the feature length in seconds
        above which a video is counted as a ``duration_mismatch`` warning (`data.feature_check`).
    feature_rate: feature rows per second for that comparison; None = the median over the file.
    check_cache_dir: folder caching the feature check's result (keyed by the files' size and mtime);
        None = check every time.
    seed: seed of the shuffling and of the negative sentences.
    synthetic: generator parameters (`fsan_lightning.data.synthetic.SyntheticConfig` fields).
    limit_queries: keep only the first N queries of each split (tests, smoke runs).
    subset, annotations_dir, anet_sim, generate_workers: the anet_sim world (`fsan_lightning.data.anet_sim`):
        N training videos and the proportional share of val_1/val_2 (None = full size), the folder of
        the real annotation files (None = $FSAN_SHARED_DATA/activitynet_captions), generator
        parameters (`AnetSimConfig` fields), rendering processes.
    binding_tolerance: None (default) = no binding negatives in the batches; an int turns them on for the
        training and validation items (`fsan_lightning.data.negatives.BindingNegatives`, for the loss term
        ``triplet_binding``): a swap is rejected when it lies within this many content words of another
        sentence of the video.
    siblings: False (default) = no siblings in the batches; True adds one to the training and validation
        items (another sentence of the same video, `fsan_lightning.data.negatives.SiblingSentences`, for
        the loss term ``sibling``).
    clip_cache_mb: megabytes (per process) of pooled clips kept in memory and shared by the three splits
        (`fsan_lightning.data.clip_cache.ClipCache`, least recently used out), so a video is read and pooled
        once, not once per sentence and epoch; 0 = no cache (read every time). Each DataLoader worker has
        its own budget.
    """

    def __init__(self, dataset: str = "synthetic", data_dir: str | None = None, train_file: str | None = None,
                 val_file: str | None = None, test_file: str | None = None, features: str | None = None,
                 feature_key: str = DEFAULT_KEY_TEMPLATE, durations: list[str] | None = None,
                 num_clips: int = 64, max_tokens: int = 20, batch_size: int = 128,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = False, glove: str | None = None, min_word_count: int = 1,
                 missing_features: str = "error", seed: int = 0, synthetic: dict | None = None,
                 limit_queries: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.15,
                 bad_features: str = "error",
                 duration_tolerance: float = DURATION_TOLERANCE, feature_rate: float | None = None,
                 check_cache_dir: str | None = None, subset: int | None = None,
                 annotations_dir: str | None = None, anet_sim: dict | None = None, generate_workers: int = 1,
                 binding_tolerance: int | None = None, siblings: bool = False, clip_cache_mb: float = 512):
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"data.dataset={dataset!r}; expected one of {DATASETS}")
        if missing_features not in ("error", "skip"):
            raise ValueError(f"data.missing_features={missing_features!r}; expected 'error' or 'skip'")
        if bad_features not in ("error", "skip"):
            raise ValueError(f"data.bad_features={bad_features!r}; expected 'error' or 'skip'")
        if not duration_tolerance > 0 or (feature_rate is not None and not feature_rate > 0):
            raise ValueError(f"data.duration_tolerance={duration_tolerance} and data.feature_rate={feature_rate} "
                             "must be positive (feature_rate may be null)")
        if num_clips < 1 or max_tokens < 1 or batch_size < 1:
            raise ValueError("num_clips, max_tokens and batch_size must be positive")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if data_dir is None:
            if dataset not in ("synthetic", "anet_sim"):
                raise ValueError(f"data.data_dir is required for dataset {dataset!r}")
            data_dir = DEFAULT_SYNTHETIC_DIR if dataset == "synthetic" else DEFAULT_ANET_SIM_DIR
        self.save_hyperparameters(logger=False)
        self.dataset = dataset
        self.anet_sim = {**dict(anet_sim or {}), "subset": None if subset is None else int(subset)}
        self.annotations_dir = annotations_dir
        self.generate_workers = int(generate_workers)
        self.data_dir = anet_world.world_dir(data_dir, self.anet_sim) if dataset == "anet_sim" else Path(data_dir)
        defaults = DATASET_DEFAULTS[dataset]
        self.files = {"train": self._path(train_file or defaults["train"]),
                      "val": self._path(val_file or defaults["val"]),
                      "test": self._path(test_file or defaults["test"])}
        self.features_path = self._path(features or defaults["features"])
        self.feature_key = feature_key
        durations = durations if durations is not None else defaults["durations"]
        self.durations = [str(self._path(p)) for p in durations] if durations else None
        self.num_clips, self.max_tokens = int(num_clips), int(max_tokens)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.glove, self.min_word_count = glove, int(min_word_count)
        self.missing_features, self.seed = missing_features, int(seed)
        if binding_tolerance is not None and binding_tolerance < 0:
            raise ValueError(f"data.binding_tolerance must be null or >= 0, got {binding_tolerance}")
        self.binding_tolerance = None if binding_tolerance is None else int(binding_tolerance)
        self.siblings = bool(siblings)
        if not clip_cache_mb >= 0:
            raise ValueError(f"data.clip_cache_mb must be >= 0 (0 = no cache), got {clip_cache_mb}")
        self.clip_cache = ClipCache(clip_cache_mb) if clip_cache_mb > 0 else None
        self.synthetic = dict(synthetic or {})
        self.limit_queries, self.val_fraction = limit_queries, float(val_fraction)
        self.test_fraction = float(test_fraction)
        #: the backbone record of extracted features (fsan_lightning.extract), None for other features
        self.feature_provenance: dict | None = None
        #: (x_mean [D], U [D, dim]) of PCA-reduced extracted features, else None
        self.feature_projection = None
        self.bad_features, self.duration_tolerance = bad_features, float(duration_tolerance)
        self.feature_rate = None if feature_rate is None else float(feature_rate)
        self.check_cache_dir = check_cache_dir
        self.feature_check = None
        self._check_splits: tuple[str, ...] | None = None
        self._fixed_dim: int | None = None
        self.vocab: Vocab | None = None
        self.embeddings: np.ndarray | None = None
        self.video_dim: int | None = None
        self.report: dict[str, DataReport] = {}
        self.embedding_info = None
        self._fixed_vocab: list[str] | None = None
        self._queries: dict[str, list[Query]] = {}
        self._datasets: dict[str, GroundingDataset] = {}
        self._train_sampler: EpochSampler | None = None
        self._epoch = 0
        self._ready = False

    def _path(self, name) -> Path | None:
        if name is None:
            return None
        p = Path(name)
        return p if p.is_absolute() else self.data_dir / p

    # ------------------------------------------------------------------ setup
    def use_vocabulary(self, words: list[str]) -> None:
        """Use this vocabulary (e.g. a checkpoint's) instead of building one from the training split."""
        if self._ready:
            raise RuntimeError("use_vocabulary must be called before setup()")
        self._fixed_vocab = list(words)

    def check_only(self, splits, width: int | None = None) -> None:
        """Check (and count) the features of these splits only, at this width (e.g. eval: test, the
        checkpoint's width); the other splits' videos are not read. Call before setup()."""
        if self._ready:
            raise RuntimeError("check_only must be called before setup()")
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {SPLITS}")
        self._check_splits = tuple(s for s in SPLITS if s in set(splits))
        self._fixed_dim = None if width is None else int(width)

    def prepare_data(self) -> None:
        """Generate the synthetic world into data_dir unless the cached one has the same parameters."""
        if self.dataset == "synthetic" and ensure_world(self.data_dir, self.synthetic):
            log.info("generated the synthetic world in %s", self.data_dir)
        if self.dataset == "anet_sim" and anet_world.ensure_world(self.data_dir, self.annotations_dir, self.anet_sim,
                                                                workers=self.generate_workers):
            log.info("generated the anet_sim world in %s", self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        """Read and validate everything (all splits, features, text) once, before any training."""
        if self._ready:
            return
        if (self.dataset == "synthetic" and not (self.data_dir / PARAMS_FILE).is_file()) or (
                self.dataset == "anet_sim" and not (self.data_dir / anet_world.PARAMS_FILE).is_file()):
            self.prepare_data()  # setup() called without prepare_data() (plain use, no Trainer)
        self._read_splits()
        self._check_features()
        self._build_text()
        chunked = self.dataset == "didemo"
        for split in SPLITS:
            self._datasets[split] = GroundingDataset(
                self._queries[split], self._store, self.vocab, num_clips=self.num_clips,
                max_tokens=self.max_tokens, train=split == "train", seed=self.seed, dim=self.video_dim,
                chunked=chunked, negatives=split in ("train", "val"), binding_tolerance=self.binding_tolerance,
                siblings=self.siblings, clip_cache=self.clip_cache)
        for split in SPLITS:
            log.info("%s", self.report[split].split_line(split))
        log.debug("data: %d words (%d in GloVe), embeddings %s, video features %d-d, %d clips",
                 len(self.vocab), self.embedding_info.in_glove, self.embeddings.shape, self.video_dim,
                 self.num_clips)
        self._ready = True

    def _read_own(self) -> None:
        """Own videos: one description file, split by video (fsan_lightning.data.own)."""
        path = self.files["train"]
        if not path.is_file():
            raise FileNotFoundError(f"description file not found: {path} (data.train_file, "
                                    f"data.data_dir={self.data_dir})")
        descs = read_descriptions(path)
        splits = split_descriptions(descs, self.val_fraction, self.test_fraction, file=path)
        if not self.features_path.exists():
            raise FileNotFoundError(f"feature file not found: {self.features_path} (data.features); extract it "
                                    f"with: python -m fsan_lightning.extract {path} --out {self.features_path}")
        durations = recorded_durations(self.features_path, self.feature_key,
                                       [d.vid for d in descs if d.duration is None])
        for split in SPLITS:
            self._queries[split], self.report[split] = own_queries(splits[split], split, durations, path)

    def _read_splits(self) -> None:
        if self.dataset == "own":
            self._read_own()
        for split in SPLITS if self.dataset != "own" else ():
            path = self.files[split]
            if path is None:
                continue
            if not path.is_file():
                raise FileNotFoundError(f"{split} annotation file not found: {path} (data.{split}_file, "
                                        f"data.data_dir={self.data_dir})")
            queries, report = read_annotations(self.dataset, path, self.durations)
            self._queries[split], self.report[split] = queries, report
        if self.files["val"] is None and self.dataset != "own":
            self._hold_out_val()
        if self.limit_queries is not None:
            for split in SPLITS:
                kept = self._queries[split][: int(self.limit_queries)]
                report = self.report[split]
                report.notes.append(f"limit_queries={self.limit_queries}: {len(kept)} of "
                                    f"{len(self._queries[split])} queries used")
                self._queries[split] = kept
        for split in SPLITS:
            if not self._queries[split]:
                raise ValueError(f"the {split} split has no usable query ({self.report[split].summary()})")

    def _hold_out_val(self) -> None:
        """Move ``val_fraction`` of the training videos (by a hash of the id) to a validation split."""
        def held_out(vid):
            h = int.from_bytes(hashlib.sha1(vid.encode()).digest()[:4], "little")
            return h % 10_000 < self.val_fraction * 10_000

        train, report = self._queries["train"], self.report["train"]
        val = [q for q in train if held_out(q.vid)]
        rest = [q for q in train if not held_out(q.vid)]
        report.pairs -= len(val)
        report.queries, report.videos = len(rest), len({q.vid for q in rest})
        report.notes.append(f"{len(val)} queries of {len({q.vid for q in val})} videos held out for validation")
        vrep = DataReport(dataset=self.dataset, file=f"{self.files['train']} [held-out "
                                                     f"{self.val_fraction:.0%} of the videos]",
                          pairs=len(val), queries=len(val), videos=len({q.vid for q in val}))
        self._queries["train"], self._queries["val"], self.report["val"] = rest, val, vrep

    def _check_features(self) -> None:
        """The full feature check of the splits this run reads (`data.feature_check`), before training."""
        if not self.features_path.exists():
            raise FileNotFoundError(f"feature file not found: {self.features_path} (data.features, "
                                    f"data.data_dir={self.data_dir})")
        store = open_feature_store(self.features_path, self.feature_key)
        chunked = self.dataset == "didemo"
        splits = self._check_splits or SPLITS
        if chunked:
            rows = video_needs({s: self._queries[s] for s in SPLITS}, DIDEMO_CHUNK_S)
            most = max(n.min_rows for n in rows.values())
            if most > self.num_clips:
                raise ValueError(f"DiDeMo videos have up to {most} chunks but num_clips={self.num_clips}; "
                                 "set data.num_clips=6")
        needs = video_needs({s: self._queries[s] for s in splits}, DIDEMO_CHUNK_S if chunked else None)
        check = cached_check(
            store, needs, self.check_cache_dir, dim=self._fixed_dim,
            num_clips=None if chunked else self.num_clips, duration_tolerance=self.duration_tolerance,
            feature_rate=self.feature_rate, check_durations=not chunked)
        store.close()  # nothing stays open before the DataLoader workers fork
        self.feature_check = check
        log.debug("feature check of %s: %d videos, %d rows, %.2f s%s", check.file, check.videos, check.rows,
                  check.seconds, " (cached)" if check.cached else "")
        missing, broken = check.missing, check.broken
        stop_missing = bool(missing) and (self.missing_features == "error" or len(missing) == len(needs))
        stop_broken = bool(broken) and (self.bad_features == "error" or len(broken) + len(missing) == len(needs))
        if stop_missing and not stop_broken:
            raise MissingFeaturesError(store.path, missing_features_message(store, missing, len(needs)))
        if stop_broken:  # every problem at once: the missing videos too, when they stop the run as well
            extra = missing_features_message(store, missing, len(needs)) + "\n" if stop_missing else ""
            raise FeatureCheckError(store.path, extra + check.broken_message())
        gone = set(missing) | set(broken)
        for split in SPLITS:
            report = self.report[split]
            vids = {q.vid for q in self._queries[split]}
            for kind, items in check.warnings.items():
                n = len(vids & set(items))
                if n:
                    report.warnings[kind] += n
            if not gone:
                continue
            kept = []
            for q in self._queries[split]:
                if q.vid in gone:
                    kind = check.problems[q.vid]["kind"]
                    report.drop("missing_features" if kind == "missing" else f"bad_features_{kind}", q.qid)
                else:
                    kept.append(q)
            report.missing_features = len(vids & set(missing))
            report.queries, report.videos = len(kept), len({q.vid for q in kept})
            if not kept:
                raise MissingFeaturesError(store.path, f"no {split} video has usable features")
            self._queries[split] = kept
        if missing:
            log.warning(missing_features_message(store, missing, len(needs)).split(";")[0] + ": skipped")
        if broken:
            log.warning("%s: %d videos with unusable features skipped (data.bad_features=skip; %s): first %s",
                        store.path, len(broken), ", ".join(f"{k}={n}" for k, n in check.problem_counts().items()
                                                           if k != "missing"), broken[0])
        for line in check.warning_lines():
            log.warning(line)
        if check.width is None:
            raise FeatureCheckError(store.path, "no video has usable features")
        self._store, self.video_dim = store, int(check.width)
        self.feature_provenance = read_provenance(self.features_path)
        if self.feature_provenance and "pca_dim" in self.feature_provenance:
            self.feature_projection = read_projection(self.features_path)

    def _build_text(self) -> None:
        if self._fixed_vocab is not None:
            self.vocab = Vocab(self._fixed_vocab)
        else:
            self.vocab = Vocab.build((q.sentence for q in self._queries["train"]), self.min_word_count,
                                     self.max_tokens)
        self.embeddings, self.embedding_info = build_embeddings(self.vocab, self.glove, cache_dir=self.data_dir)

    # ------------------------------------------------------------------ access
    def queries(self, split: str) -> list[Query]:
        """The Query records of a split ("train", "val", "test") after setup."""
        self._require_ready()
        return self._queries[split]

    def dataset_of(self, split: str) -> GroundingDataset:
        self._require_ready()
        return self._datasets[split]

    def _require_ready(self):
        if not self._ready:
            raise RuntimeError("call setup() first")

    def report_dict(self) -> dict:
        self._require_ready()
        return {
            "dataset": self.dataset,
            "data_dir": str(self.data_dir),
            "files": {k: (str(v) if v else None) for k, v in self.files.items()},
            "features": {"path": str(self.features_path), "key": self.feature_key, "dim": self.video_dim,
                         "backbone": self.feature_provenance},
            "num_clips": self.num_clips,
            "max_tokens": self.max_tokens,
            "splits": {s: self.report[s].to_dict() for s in SPLITS},
            "feature_check": self._feature_check_summary(),
            "text": self.embedding_info.to_dict(),
        }

    def _feature_check_summary(self) -> dict | None:
        c = self.feature_check
        if c is None:
            return None
        return {"file": c.file, "splits": list(self._check_splits or SPLITS), "videos": c.videos, "rows": c.rows,
                "width": c.width, "rate_rows_per_s": c.rate, "seconds": c.seconds, "cached": c.cached,
                "problems": c.problem_counts(), "warnings": c.warning_counts(),
                "problem_videos": {v: p["message"] for v, p in sorted(c.problems.items())},
                "warning_videos": {k: dict(sorted(v.items())) for k, v in sorted(c.warnings.items())}}

    def write_report(self, path) -> None:
        """Write data_report.json: per split the pairs read, queries kept, repairs, drops, missing features."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.report_dict(), indent=1))
        tmp.replace(path)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the negatives by hand (Lightning already does it through the sampler)."""
        self._require_ready()
        self._epoch = int(epoch)
        self._datasets["train"].set_epoch(epoch)
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds, batch_size, sampler=None) -> DataLoader:
        # worker_init_fn stays None so that seed_everything(workers=True) installs Lightning's; items
        # are deterministic functions of (seed, epoch, index) anyway
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, collate_fn=collate,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers)

    def train_dataloader(self) -> DataLoader:
        self._require_ready()
        world, rank = 1, 0
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            world, rank = trainer.world_size, trainer.global_rank
        self._train_sampler = EpochSampler(self._datasets["train"], shuffle=True, seed=self.seed,
                                           num_replicas=world, rank=rank)
        self._train_sampler.set_epoch(self._epoch)  # Lightning sets it again at each epoch start
        return self._loader(self._datasets["train"], self.batch_size, self._train_sampler)

    def fit_dataloader(self) -> DataLoader:
        """Every training item once, in order, on every rank (fits from the training split before training,
        e.g. the word salience; the items carry no timestamps)."""
        self._require_ready()
        return self._loader(self._datasets["train"], self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        self._require_ready()
        return self._loader(self._datasets["val"], self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        self._require_ready()
        return self._loader(self._datasets["test"], self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
