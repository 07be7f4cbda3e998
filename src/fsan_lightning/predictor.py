"""FSANPredictor: ground free-text queries in a video's features with a trained checkpoint.

    predictor = FSANPredictor.from_checkpoint("run/checkpoints/epoch007.ckpt")
    result = predictor.predict("a man slices a red tomato", features, duration=87.0)
    result["pred_relevant_windows"]   # [[start_s, end_s, score], ...] best first

Everything comes from the checkpoint (loaded weights-only): network, vocabulary, ranking settings and
the data side's ``num_clips`` / ``max_tokens``, so features are pooled and queries tokenised exactly as
in training, and the moments equal those that train/eval write to ``predictions_test.jsonl``.

Importing this module does not import Lightning; `FSANPredictor.from_checkpoint` does.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, overload

import numpy as np
import torch

from fsan_lightning import ops
from fsan_lightning.data.features import chunk_clips, pool_clips
from fsan_lightning.data.readers import DIDEMO_CHUNK_S
from fsan_lightning.data.text import UNK, Vocab, is_content, tokenize

__all__ = ["EncodedQuery", "FSANPredictor", "Grounding", "GroundingRequest", "PredictError",
           "UnknownWordsWarning", "format_windows"]


class PredictError(ValueError):
    """Input the predictor cannot ground (empty query, bad features, bad duration, ...)."""


class UnknownWordsWarning(UserWarning):
    """No word of a query is in the checkpoint's vocabulary: the answer ignores the text."""


class Grounding(TypedDict, total=False):
    """One query's answer. ``qid`` and ``vid`` only from `FSANPredictor.predict_requests`.

    pred_relevant_windows: [[start_s, end_s, score], ...] best first; seconds rounded to 1e-4 and
        scores to 1e-6 as in ``predictions_test.jsonl``; a score is None for a filler window past the
        valid segments (-inf).
    alignment: float32 [n_tokens, L], the min-max alignment map P (tokens x valid clips).
    tokens: the n_tokens words of the alignment's rows. unknown_words: those not in the vocabulary.
    """

    qid: str
    vid: str
    query: str
    duration: float
    pred_relevant_windows: list[list[float | None]]
    alignment: np.ndarray
    tokens: list[str]
    unknown_words: list[str]


@dataclass(frozen=True)
class EncodedQuery:
    """A query tokenised with the checkpoint's vocabulary (what the dataset makes of a sentence)."""

    text: str
    words: list[str]
    ids: list[int]
    content: list[bool]
    unknown: list[str]


@dataclass(frozen=True)
class GroundingRequest:
    """One (video, query) pair of `FSANPredictor.predict_requests`; ``source`` names it in errors."""

    vid: str
    query: str
    duration: float
    qid: str | None = None
    source: str = ""


def format_windows(windows: torch.Tensor) -> list[list[float | None]]:
    """[K, 3] (start_s, end_s, score) -> lists rounded as train/eval round them (-inf score -> None)."""
    return [[round(s, 4), round(e, 4), round(sc, 6) if math.isfinite(sc) else None]
            for s, e, sc in windows.detach().float().cpu().tolist()]


class FSANPredictor:
    """Ground queries in videos with a trained FSAN module (inference only, eval mode, no gradients).

    FSAN's video encoding depends on the query (ICIM's cross-attention runs both ways), so nothing of
    the video can be computed once and reused across queries: many queries against one video are
    batched into one forward pass with the pooled video repeated per query (``batch_size`` rows per
    pass).

    Args:
        module: a trained module with ``rank(batch) -> (out, scores, windows)`` and ``hparams`` holding
            ``vocab``, ``video_dim``, ``nms_threshold``, ``top_k``, ``eval_protocol``.
        num_clips: Nv, the clips the features are pooled to (the training run's ``data.num_clips``).
        max_tokens: words kept per query (the training run's ``data.max_tokens``).
        batch_size: rows per forward pass.
    """

    def __init__(self, module: Any, *, num_clips: int, max_tokens: int, batch_size: int = 64) -> None:
        if num_clips < 1 or max_tokens < 1 or batch_size < 1:
            raise ValueError(f"num_clips, max_tokens and batch_size must be positive, got {num_clips}, "
                             f"{max_tokens}, {batch_size}")
        self.module = module.eval()
        hp = module.hparams
        self.vocab = Vocab(list(hp["vocab"]))
        self.video_dim = int(hp["video_dim"])
        self.num_clips, self.max_tokens, self.batch_size = int(num_clips), int(max_tokens), int(batch_size)
        # DiDeMo checkpoints rank all 21 chunk moments; their clips are the 5-second chunk rows
        self.chunked = hp.get("eval_protocol") == "didemo"
        self.device = next(module.parameters()).device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", *,
                        num_clips: int | None = None, max_tokens: int | None = None,
                        batch_size: int = 64) -> FSANPredictor:
        """Rebuild the predictor from a checkpoint alone (weights-only loading; no config, no data).

        ``num_clips`` / ``max_tokens`` override the checkpoint's ``data_num_clips`` /
        ``data_max_tokens``; they are needed only for checkpoints saved before those were recorded.
        Raises `CheckpointError` for a file that is not an FSAN checkpoint or would need code to load.
        """
        from fsan_lightning.lit.checkpoint import CheckpointError, load_module

        module = load_module(path, map_location=device)
        if not callable(getattr(module, "rank", None)):
            raise CheckpointError(f"{path}: {type(module).__name__} cannot rank moments (no rank method); "
                                  "not an FSAN grounding checkpoint")
        hp = module.hparams
        settings = {}
        for name, given in (("num_clips", num_clips), ("max_tokens", max_tokens)):
            value = given if given is not None else hp.get(f"data_{name}")
            if value is None:
                raise CheckpointError(
                    f"{path} does not record the data side's {name} (hparam data_{name}; checkpoints "
                    f"saved before it was stored): pass {name}= (CLI --{name.replace('_', '-')}) with "
                    f"the data.{name} of its training run")
            settings[name] = int(value)
        return cls(module, batch_size=batch_size, **settings)

    # ------------------------------------------------------------------ inputs
    def encode_query(self, query: str) -> EncodedQuery:
        """Tokenise like the dataset (lowercase words, first ``max_tokens``) and look words up.

        Raises PredictError for a query without any word. Warns (`UnknownWordsWarning`) when no word
        is in the vocabulary: the answer is still given, from the unknown-word vector alone.
        """
        if not isinstance(query, str):
            raise PredictError(f"a query must be a string, got {type(query).__name__}")
        words = tokenize(query, self.max_tokens)
        if not words:
            raise PredictError(f"empty query {query!r}: it has no words to ground")
        ids = self.vocab.encode(words)
        unknown = [w for w, i in zip(words, ids) if i == UNK]
        if len(unknown) == len(words):
            warnings.warn(f"none of the words of the query {query!r} is in the checkpoint's vocabulary "
                          f"({len(self.vocab)} words): the moments ignore what it says",
                          UnknownWordsWarning, stacklevel=3)
        return EncodedQuery(query, words, ids, [is_content(w) for w in words], unknown)

    def prepare_video(self, features: Any, duration: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Check ``features`` [T, D] and pool them as training does.

        Returns clips float32 [num_clips, D] and mask bool [num_clips] (valid prefix), on the device.
        Raises PredictError for a non-2-D array, no rows, a width other than the checkpoint's, NaN/inf.
        """
        duration = self.check_duration(duration)
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise PredictError(f"features must be a 2-D array [T > 0, D], got shape {tuple(feats.shape)}")
        if feats.shape[1] != self.video_dim:
            raise PredictError(f"features have width {feats.shape[1]}, but the checkpoint was trained on "
                               f"{self.video_dim}-d features")
        bad = ~np.isfinite(feats)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise PredictError(f"features contain NaN or inf in {len(rows)} of {feats.shape[0]} rows "
                               f"(first row {int(rows[0])})")
        if self.chunked:
            num_valid = round(duration / DIDEMO_CHUNK_S)
            if not 0 < num_valid <= min(feats.shape[0], self.num_clips):
                raise PredictError(f"a DiDeMo checkpoint needs duration = 5 s x chunks with one feature row "
                                   f"per chunk; got duration {duration} s ({num_valid} chunks) and "
                                   f"{feats.shape[0]} rows (at most {self.num_clips} chunks)")
            clips, mask = chunk_clips(feats, num_valid, self.num_clips)
        else:
            clips, mask = pool_clips(feats, self.num_clips)
        return torch.from_numpy(clips).to(self.device), torch.from_numpy(mask).to(self.device)

    @staticmethod
    def check_duration(duration: Any) -> float:
        """The duration as a float; PredictError unless it is a finite number > 0."""
        try:
            value = float(duration)
        except (TypeError, ValueError):
            raise PredictError(f"duration must be a number of seconds, got {duration!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise PredictError(f"duration must be a finite number of seconds > 0, got {duration!r}")
        return value

    # ------------------------------------------------------------------ grounding
    @overload
    def predict(self, query: str, features: Any, duration: float, top_k: int = 5) -> Grounding: ...

    @overload
    def predict(self, query: Sequence[str], features: Any, duration: float, top_k: int = 5) -> list[Grounding]: ...

    def predict(self, query, features, duration, top_k=5):
        """Ground one query (-> a `Grounding`) or several (-> a list, in order) in one video.

        Args:
            query: a sentence, or a list of sentences about the same video.
            features: float [T, D] clip features of the video (numpy or torch), D = the checkpoint's.
            duration: the video's length in seconds (> 0).
            top_k: moments returned per query (clamped to the number of candidate segments).

        Returns ``{"query", "duration", "pred_relevant_windows", "alignment", "tokens",
        "unknown_words"}`` per query (see `Grounding`).
        """
        single = isinstance(query, str)
        queries = [query] if single else list(query)
        top_k = self._check_top_k(top_k)
        duration = self.check_duration(duration)
        encoded = [self.encode_query(q) for q in queries]
        clips, mask = self.prepare_video(features, duration)
        results: list[Grounding] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start:start + self.batch_size]
            b = len(chunk)
            results += self._ground(clips.expand(b, -1, -1), mask.expand(b, -1), chunk, [duration] * b, top_k)
        return results[0] if single else results

    def predict_requests(self, requests: Sequence[GroundingRequest],
                         features_of: Callable[[str], Any], top_k: int = 5) -> list[Grounding]:
        """Ground many (video, query) pairs; ``features_of(vid)`` returns a video's [T, D] features.

        Every request is checked before any forward pass (errors name ``request.source``). Requests of
        the same video are batched together and each video is read once per batch. Returns one
        `Grounding` per request, in order, with ``vid`` (and ``qid`` when given) added.
        """
        top_k = self._check_top_k(top_k)
        encoded, durations = [], []
        for i, req in enumerate(requests):
            where = req.source or f"request {i} (vid {req.vid!r})"
            try:
                durations.append(self.check_duration(req.duration))
                encoded.append(self.encode_query(req.query))
            except PredictError as err:
                raise PredictError(f"{where}: {err}") from None
        first_seen: dict[str, int] = {}
        for i, req in enumerate(requests):
            first_seen.setdefault(req.vid, i)
        order = sorted(range(len(requests)), key=lambda i: (first_seen[requests[i].vid], i))
        results: list[Grounding | None] = [None] * len(requests)
        cache: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor]] = {}
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            cache = {k: v for k, v in cache.items() if k[0] == requests[rows[0]].vid}
            clips, masks = [], []
            for i in rows:
                req = requests[i]
                key = (req.vid, durations[i])
                if key not in cache:
                    try:
                        cache[key] = self.prepare_video(features_of(req.vid), durations[i])
                    except PredictError as err:
                        raise PredictError(f"{req.source or f'request {i}'}: video {req.vid!r}: {err}") from None
                clips.append(cache[key][0])
                masks.append(cache[key][1])
            answers = self._ground(torch.stack(clips), torch.stack(masks), [encoded[i] for i in rows],
                                   [durations[i] for i in rows], top_k)
            for i, answer in zip(rows, answers):
                req = requests[i]
                head: Grounding = {"qid": req.qid} if req.qid is not None else {}
                head["vid"] = req.vid
                results[i] = {**head, **answer}
        return results  # type: ignore[return-value]

    @staticmethod
    def _check_top_k(top_k: Any) -> int:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise PredictError(f"top_k must be a positive integer, got {top_k!r}")
        return top_k

    def _ground(self, video: torch.Tensor, video_mask: torch.Tensor, queries: list[EncodedQuery],
                durations: list[float], top_k: int) -> list[Grounding]:
        """One forward pass. video [B, Nv, D], video_mask [B, Nv]; B = len(queries)."""
        b, ns = len(queries), max(len(q.ids) for q in queries)
        tokens = torch.zeros(b, ns, dtype=torch.int64)
        token_mask = torch.zeros(b, ns, dtype=torch.bool)
        content_mask = torch.zeros(b, ns, dtype=torch.bool)
        for i, q in enumerate(queries):
            tokens[i, :len(q.ids)] = torch.tensor(q.ids)
            token_mask[i, :len(q.ids)] = True
            content_mask[i, :len(q.ids)] = torch.tensor(q.content)
        batch = {
            "video": video, "video_mask": video_mask,
            "tokens": tokens.to(self.device), "token_mask": token_mask.to(self.device),
            "content_mask": content_mask.to(self.device),
            # float32 as in the training batch, so the seconds round identically
            "duration": torch.tensor(durations, dtype=torch.float32, device=self.device),
        }
        hp = self.module.hparams
        with torch.inference_mode():
            out, scores, windows = self.module.rank(batch)
            if hp.get("eval_protocol") == "didemo":
                windows = windows[:, :top_k]  # all 21 moments ranked without NMS: the top k of them
            elif top_k != hp.get("top_k"):
                windows = ops.rank_moments(scores, batch["video_mask"], batch["duration"], top_k,
                                           hp.get("nms_threshold"))
        lengths = video_mask.sum(1).tolist()
        P = getattr(out, "P", None)
        answers: list[Grounding] = []
        for i, q in enumerate(queries):
            alignment = (P[i, :len(q.ids), :int(lengths[i])].float().cpu().numpy() if P is not None
                         else np.zeros((len(q.ids), 0), dtype=np.float32))
            answers.append({
                "query": q.text, "duration": durations[i], "pred_relevant_windows": format_windows(windows[i]),
                "alignment": alignment, "tokens": list(q.words), "unknown_words": list(q.unknown),
            })
        return answers
