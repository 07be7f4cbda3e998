"""Read back the records of an offline W&B run file (``run-*.wandb``) for tests.

wandb >= 0.20 writes runs from its Go core and no longer ships a Python reader. The file is a
LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
each with a 7-byte header (crc32 uint32, length uint16, type uint8: 1 full, 2 first, 3 middle,
4 last) and a protobuf ``Record`` split across chunks.
"""
from __future__ import annotations

import struct
from pathlib import Path

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
