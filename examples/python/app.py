"""Items API: the Python example service.

A small JSON API (Flask under gunicorn) whose every JSON encode and decode goes through
the local package ``jsonfast``. Its own state is kept off the heap: items and sessions
live in one SQLite file that every worker opens (see gunicorn.conf.py), with SQLite's
bounded page cache. So with a clean jsonfast its memory stays flat under any amount of
traffic, and any growth is the dependency's.

    POST   /sessions      {"username": "...", "password": "..."} -> 201 {"token": "..."}
    POST   /items         any JSON object -> 201 {"id": N}
    GET    /items/N       -> 200 the object with its "id"
    GET    /items?limit=  -> 200 {"items": [...]}, newest first (limit 1..100, default 20)
    DELETE /items/N       -> 204
    GET    /healthz       -> 200 {"status": "ok"}

Item routes need ``Authorization: Bearer TOKEN`` and see only their user's items.
Errors are ``{"error": "..."}`` with the status that fits.
"""

import hashlib
import os
import secrets
import sqlite3
import threading
import time

import jsonfast
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

DB_PATH = os.environ.get("ITEMS_DB")
if not DB_PATH:
    raise RuntimeError(
        "ITEMS_DB is not set: start the app with gunicorn -c gunicorn.conf.py "
        "(it makes the database the workers share) or set ITEMS_DB to a SQLite file"
    )

SESSION_SECONDS = 3600
MAX_LIMIT = 100
# Nesting deeper than this is refused: orjson encodes at most 254 levels.
MAX_DEPTH = 64
# SQLite's largest integer: a larger id in a URL names no item (and must not reach SQLite).
MAX_ID = 2**63 - 1

app = Flask(__name__)
# Bodies are small JSON documents; a larger one is refused with 413 before it is read.
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

_local = threading.local()


def db():
    """This thread's connection (one per worker: gunicorn's workers are processes)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=10, isolation_level=None)
        # WAL lets the workers read while one writes; NORMAL syncs at checkpoints only.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS sessions (
                token_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, created REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created);
            CREATE TABLE IF NOT EXISTS items (
                id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, body BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS items_owner ON items (owner, id);
            """
        )
        _local.conn = conn
    return conn


def fetch_one(sql, params):
    return db().execute(sql, params).fetchone()


def json_response(obj, status=200):
    return Response(jsonfast.dumps(obj), status, mimetype="application/json")


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@app.errorhandler(ApiError)
def api_error(err):
    return json_response({"error": err.message}, err.status)


@app.errorhandler(HTTPException)
def http_error(err):
    return json_response({"error": err.description}, err.code)


def json_body():
    try:
        body = jsonfast.loads(request.get_data())
    except jsonfast.JSONDecodeError as err:
        raise ApiError(400, f"the body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if nested_deeper_than(body, MAX_DEPTH):
        raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels")
    return body


def nested_deeper_than(value, limit):
    todo = [(value, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in value)
    return False


def hash_token(token):
    return hashlib.sha256(token.encode()).hexdigest()


def current_user():
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "send Authorization: Bearer TOKEN (POST /sessions gives one)")
    row = fetch_one(
        "SELECT username FROM sessions WHERE token_sha256 = ? AND created > ?",
        (hash_token(token), time.time() - SESSION_SECONDS),
    )
    if row is None:
        raise ApiError(401, "the token is unknown or has expired")
    return row[0]


@app.get("/healthz")
def healthz():
    return json_response({"status": "ok"})


@app.post("/sessions")
def create_session():
    body = json_body()
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not 1 <= len(username) <= 100:
        raise ApiError(400, '"username" must be a string of 1 to 100 characters')
    if not isinstance(password, str) or not password:
        raise ApiError(400, '"password" must be a non-empty string')
    # Any password is accepted: the route stands for a login, not an account system.
    token = secrets.token_urlsafe(32)
    now = time.time()
    conn = db()
    conn.execute("DELETE FROM sessions WHERE created <= ?", (now - SESSION_SECONDS,))
    conn.execute(
        "INSERT INTO sessions (token_sha256, username, created) VALUES (?, ?, ?)",
        (hash_token(token), username, now),
    )
    return json_response({"token": token}, 201)


@app.post("/items")
def create_item():
    owner = current_user()
    body = json_body()
    cursor = db().execute(
        "INSERT INTO items (owner, body) VALUES (?, ?)", (owner, jsonfast.dumps(body))
    )
    return json_response({"id": cursor.lastrowid}, 201)


def item_from_row(item_id, body):
    return {**jsonfast.loads(body), "id": item_id}


@app.get("/items/<int:item_id>")
def get_item(item_id):
    owner = current_user()
    row = None
    if item_id <= MAX_ID:
        row = fetch_one("SELECT body FROM items WHERE id = ? AND owner = ?", (item_id, owner))
    if row is None:
        raise ApiError(404, f"no item {item_id}")
    return json_response(item_from_row(item_id, row[0]))


@app.get("/items")
def list_items():
    owner = current_user()
    raw = request.args.get("limit", "20")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f'"limit" must be a whole number from 1 to {MAX_LIMIT}')
    rows = db().execute(
        "SELECT id, body FROM items WHERE owner = ? ORDER BY id DESC LIMIT ?", (owner, int(raw))
    )
    return json_response({"items": [item_from_row(i, body) for i, body in rows]})


@app.delete("/items/<int:item_id>")
def delete_item(item_id):
    owner = current_user()
    if item_id > MAX_ID:
        raise ApiError(404, f"no item {item_id}")
    cursor = db().execute("DELETE FROM items WHERE id = ? AND owner = ?", (item_id, owner))
    if cursor.rowcount == 0:
        raise ApiError(404, f"no item {item_id}")
    return Response(status=204)
