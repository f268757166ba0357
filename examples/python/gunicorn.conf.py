"""gunicorn settings for the items API (app.py).

Two pre-forked worker processes serve the requests, so whatever leaks, leaks in the
children: the memory to watch is the whole process tree. The command line overrides
any of these (``-w``, ``-b``).
"""

import os
import shutil
import tempfile

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = 2
# Never recycle workers: a restarted worker would hand its memory back and hide a leak.
max_requests = 0
# gunicorn 25.1+ opens a control socket at one fixed path per user by default, which two
# instances side by side (a baseline and a candidate) would fight over.
control_socket_disable = True

_made_dir = None


def on_starting(server):
    """Makes the SQLite file every worker opens, unless ITEMS_DB names one already.

    The workers inherit the environment, so they all find the same file.
    """
    global _made_dir
    if not os.environ.get("ITEMS_DB"):
        _made_dir = tempfile.mkdtemp(prefix="items-api-")
        os.environ["ITEMS_DB"] = os.path.join(_made_dir, "items.sqlite3")


def on_exit(server):
    if _made_dir:
        shutil.rmtree(_made_dir, ignore_errors=True)
