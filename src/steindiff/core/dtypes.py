"""The one parser of dtype names in configs and loader options (pure torch).

    parse_dtype("float32", "network_dtype")                    # torch.float32
    parse_dtype(None, "dtype")                                 # None (keep the default / saved dtype)
    parse_dtype("int8", "dtype", accepted=("float32", "float64"))
    # ValueError: dtype='int8' is not accepted: expected float32, float64 or null
"""

from __future__ import annotations

import torch

__all__ = ["DTYPES", "FLOAT_DTYPES", "parse_dtype"]

#: the floating dtypes by the names configs use
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                                  "bfloat16": torch.bfloat16}
FLOAT_DTYPES = tuple(DTYPES)


def parse_dtype(value, key: str, accepted: tuple[str, ...] = FLOAT_DTYPES) -> torch.dtype | None:
    """The torch dtype named by ``value`` (a name such as "float32", or a torch.dtype); None stays None.

    Raises a one-line ValueError naming ``key``, the value given and the ``accepted`` names when the
    value (a name or a torch.dtype) is not one of ``accepted``.
    """
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in accepted or name not in DTYPES:
        raise ValueError(f"{key}={value!r} is not accepted: expected {', '.join(accepted)} or null")
    return DTYPES[name]
