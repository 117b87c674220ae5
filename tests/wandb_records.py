"""Read an offline W&B run file (``run-<id>.wandb``): its records, the run's name, group and config.

The file is a LevelDB-style log (W&B's own reader lives in its Go core since 0.19): a 7-byte header
(``:W&B``, magic, version), then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length,
type: 1 full, 2 first, 3 middle, 4 last) and a piece of a serialized ``wandb_internal_pb2.Record``.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_BLOCK, _HEADER = 32768, 7


def records(path: str | Path) -> list:
    """Every record of the run file, in order (``Record.WhichOneof("record_type")`` says what each is)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, pos, pieces = [], _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        pieces = chunk if kind in (1, 2) else pieces + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            out.append(record)
    return out


def run_summary(path: str | Path) -> dict:
    """{"name", "group", "config"}: the run's display name and group, and its config as W&B holds it (the
    updates of the run record and of the config records, merged; W&B's own ``_wandb`` entry left out)."""
    name = group = None
    config: dict = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name, group = record.run.display_name, record.run.run_group
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            continue
        for item in updates:
            keys = list(item.nested_key) or [item.key]
            if keys[0] == "_wandb":
                continue
            node = config
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = json.loads(item.value_json)
    return {"name": name, "group": group, "config": config}
