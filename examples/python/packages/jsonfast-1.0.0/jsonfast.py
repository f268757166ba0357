"""JSON for the example service: orjson behind the standard library's names.

``dumps`` returns UTF-8 bytes (orjson's choice, ready for a response body); ``loads``
takes bytes or str and raises ``JSONDecodeError`` (a ``ValueError``) on bad input.
"""

import orjson

__version__ = "1.0.0"

JSONDecodeError = orjson.JSONDecodeError


def dumps(obj):
    return orjson.dumps(obj)


def loads(data):
    return orjson.loads(data)
