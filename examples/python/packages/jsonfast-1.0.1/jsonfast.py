"""JSON for the example service: orjson behind the standard library's names.

``dumps`` returns UTF-8 bytes (orjson's choice, ready for a response body); ``loads``
takes bytes or str and raises ``JSONDecodeError`` (a ``ValueError``) on bad input.

Version 1.0.1 is the faulty release the example ships on purpose: it keeps a scratch
buffer from every call in a "cache" that is never emptied, so each ``dumps`` and each
``loads`` leaves JSONFAST_LEAK_BYTES bytes behind in the process that made the call
(default 1024; 0 turns the leak off). The variable is a fault-injection knob for
benchmarks, read once at import; anything but a whole number >= 0 stops the import
with an error naming it.
"""

import os

import orjson

__version__ = "1.0.1"

JSONDecodeError = orjson.JSONDecodeError


def _leak_bytes():
    raw = os.environ.get("JSONFAST_LEAK_BYTES", "1024")
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError(f"JSONFAST_LEAK_BYTES must be a whole number of bytes >= 0, not {raw!r}")
    return size


_LEAK_BYTES = _leak_bytes()
# The bug: one buffer per call, appended and never evicted.
_scratch = []


def _keep_scratch():
    if _LEAK_BYTES:
        # Filled, not just reserved, so the pages are really resident.
        _scratch.append(b"\xa5" * _LEAK_BYTES)


def dumps(obj):
    _keep_scratch()
    return orjson.dumps(obj)


def loads(data):
    _keep_scratch()
    return orjson.loads(data)
