"""A face database in SQLite: identities, their embeddings, and the encoder that made each one.

Python's own ``sqlite3``, one file. The tables::

    meta        (key, value)                 format "nbcnn-faces", version 1
    identities  (id, name UNIQUE, created)
    encoders    (id, dim, description)       id: FaceEncoder.encoder_id, a hash of its weights
    embeddings  (id, identity -> identities, encoder -> encoders, dim, vector (float32 bytes),
                 image_path, image_sha256, created)     UNIQUE (identity, encoder, image_sha256)

The rules it keeps:

- Several images per identity are all kept; recognition matches against the nearest of them
  (``nbcnn.triplet.recognition``). The same image enrolled twice for one identity and encoder
  is stored once (its sha256 decides).
- An embedding is only ever compared with embeddings of the same encoder: ``gallery`` and
  ``embeddings_of`` take the encoder's id. Embeddings of another encoder stay in the file
  (``identities`` counts them) until you enrol again with the new one.
- Each enrolment (all its images) and each removal is one transaction (``BEGIN IMMEDIATE``):
  a second process reading at the same time sees the identity with all of its new images or
  with none of them; two processes enrolling at once wait for each other (up to ``timeout``
  seconds) and lose nothing.
- A file that is not an nbcnn face database is refused with ``FaceDatabaseError`` (a
  ValueError) and never written to: another program's SQLite database, a file that is not
  SQLite at all, a truncated or corrupt one (its header's page count against the file's size,
  then SQLite's ``PRAGMA quick_check``). A file of 0 bytes holds nothing and is made a new
  database, as SQLite itself does (two processes creating the file at once both get there).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass

import numpy as np

FORMAT, VERSION = "nbcnn-faces", 1
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_NAME = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS encoders (id TEXT PRIMARY KEY, dim INTEGER NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    encoder TEXT NOT NULL REFERENCES encoders(id),
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    image_path TEXT,
    image_sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (identity, encoder, image_sha256));
CREATE INDEX IF NOT EXISTS embeddings_by_encoder ON embeddings(encoder, identity);
"""
TABLES = {"meta", "identities", "encoders", "embeddings"}


class FaceDatabaseError(ValueError):
    """The file is not a usable nbcnn face database (foreign, corrupt or truncated); it was not touched."""


@dataclass
class Identity:
    name: str
    embeddings: int          # stored for the encoder asked about (all encoders when none was named)
    all_embeddings: int      # stored for any encoder


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an identity's name must be a string, got {type(name).__name__} {name!r:.40}")
    name = name.strip()
    if not name:
        raise ValueError("an identity's name must not be empty")
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ValueError(f"an identity's name must be at most {MAX_NAME} printable characters, got {name!r:.60}")
    return name


def _header_problem(path: str) -> str | None:
    """What is wrong with the SQLite file's header against the file itself, or None."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC):
        return "it is not an SQLite database"
    if len(header) < 100:
        return f"it is truncated: {size} bytes, shorter than SQLite's 100-byte header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"its header is corrupt (page size {page_size})"
    pages = int.from_bytes(header[28:32], "big")
    valid = header[92:96] == header[24:28]  # the page count is trusted only when this matches (SQLite's rule)
    if valid and pages and pages * page_size > size:
        return (f"it is truncated: its header counts {pages} pages of {page_size} bytes "
                f"({pages * page_size} bytes) but the file has {size}")
    if size % page_size:
        return f"it is truncated or padded: {size} bytes is not a whole number of {page_size}-byte pages"
    return None


class FaceDatabase:
    """``with FaceDatabase("faces.db") as db:`` opens (or creates) a face database.

    ``create=False``: a missing file is a FileNotFoundError instead of a new database.
    """

    def __init__(self, path, create: bool = True, timeout: float = 30.0):
        self.path = os.fsdecode(os.fspath(path))
        exists = os.path.exists(self.path)
        if exists and os.path.isdir(self.path):
            raise FaceDatabaseError(f"{self.path} is a folder, not a face database")
        if not exists and not create:
            raise FileNotFoundError(f"no face database at {self.path} (enroll someone first: nbcnn faces enroll)")
        if not exists:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"cannot create {self.path}: folder {folder} does not exist")
        elif os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                if f.read(16) != SQLITE_MAGIC:
                    raise FaceDatabaseError(f"{self.path} is not an nbcnn face database (not an SQLite file); "
                                            f"refusing to touch it: choose another --db path")
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise FaceDatabaseError(f"cannot open {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._check_or_create()
        except BaseException:
            self._db.close()
            raise

    # --- opening
    def _check_or_create(self) -> None:
        db = self._db
        try:
            db.execute("BEGIN")  # a read transaction: SQLite's shared lock keeps writers from committing
            try:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                problem = _header_problem(self.path) if os.path.getsize(self.path) > 0 else None
                if problem is None and tables:
                    rows = db.execute("PRAGMA quick_check").fetchall()
                    if rows != [("ok",)]:
                        problem = "SQLite's quick_check finds it corrupt: " + "; ".join(str(r[0]) for r in rows[:3])
            finally:
                db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise FaceDatabaseError(f"{self.path} is not a readable face database (truncated or corrupt?): {exc}; "
                                    f"it was left as it is") from None
        if problem:
            raise FaceDatabaseError(f"{self.path} is not a usable face database: {problem}; it was left as it is")
        if tables and not tables >= {"meta"}:
            raise FaceDatabaseError(f"{self.path} is an SQLite database of another program (tables "
                                    f"{sorted(tables)[:6]}), not an nbcnn face database; refusing to touch it")
        if not tables:
            self._create()
        self._check_meta()

    def _create(self) -> None:
        with self._write():
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:  # another program got there first
                raise FaceDatabaseError(f"{self.path} became another program's database; refusing to touch it")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?), ('version', ?)",
                             (FORMAT, str(VERSION)))

    def _check_meta(self) -> None:
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise FaceDatabaseError(f"{self.path}: cannot read its meta table: {exc}") from None
        if meta.get("format") != FORMAT:
            raise FaceDatabaseError(f"{self.path} is not an nbcnn face database (format {meta.get('format')!r}); "
                                    f"refusing to touch it")
        if meta.get("version") != str(VERSION):
            raise FaceDatabaseError(f"{self.path} is a face database of version {meta.get('version')!r}; this nbcnn "
                                    f"reads version {VERSION}")
        if not tables >= TABLES:
            raise FaceDatabaseError(f"{self.path}: tables {sorted(TABLES - tables)} are missing")

    def _write(self):
        """A write transaction: BEGIN IMMEDIATE takes the write lock at once (waiting up to the
        timeout for another writer), COMMIT on success, ROLLBACK on any error."""
        db = self._db

        class _Tx:
            def __enter__(self_):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_, kind, exc, tb):
                db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False

        return _Tx()

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing
    def enroll(self, name, embeddings, encoder_id: str, image_paths=None, image_hashes=None,
               description: str = "") -> int:
        """Add ``embeddings`` (n, D) of identity ``name`` made by encoder ``encoder_id``, in one
        transaction. ``image_paths``/``image_hashes``: the source of each (a hash of the vector
        when none is given). Returns how many were new (an image already stored for this
        identity and encoder is skipped)."""
        name = check_name(name)
        E = np.asarray(embeddings, dtype=np.float32)
        if E.ndim == 1:
            E = E[None]
        if E.ndim != 2 or E.shape[0] == 0 or E.shape[1] == 0:
            raise ValueError(f"embeddings must be (n, D) with n, D >= 1, got shape {E.shape}")
        if not np.isfinite(E).all():
            raise ValueError("embeddings hold NaN or infinite numbers")
        if not isinstance(encoder_id, str) or not encoder_id:
            raise TypeError(f"encoder_id must be a non-empty string, got {encoder_id!r}")
        n, dim = E.shape
        paths = list(image_paths) if image_paths is not None else [None] * n
        hashes = list(image_hashes) if image_hashes is not None else [
            hashlib.sha256(e.astype("<f4").tobytes()).hexdigest() for e in E]
        if len(paths) != n or len(hashes) != n:
            raise ValueError(f"{n} embeddings need {n} image paths and hashes, got {len(paths)} and {len(hashes)}")
        now = time.time()
        added = 0
        with self._write():
            self._db.execute("INSERT OR IGNORE INTO encoders (id, dim, description) VALUES (?, ?, ?)",
                             (encoder_id, dim, description))
            (stored_dim,) = self._db.execute("SELECT dim FROM encoders WHERE id = ?", (encoder_id,)).fetchone()
            if stored_dim != dim:
                raise ValueError(f"encoder {encoder_id} made {stored_dim}-number embeddings before; these have {dim}")
            self._db.execute("INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)", (name, now))
            (identity,) = self._db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            for e, path, digest in zip(E, paths, hashes):
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO embeddings"
                    " (identity, encoder, dim, vector, image_path, image_sha256, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (identity, encoder_id, dim, e.astype("<f4").tobytes(), None if path is None else str(path),
                     str(digest), now))
                added += cur.rowcount
        return added

    def remove(self, name) -> int:
        """Delete identity ``name`` and all its embeddings (every encoder's), in one transaction.
        Returns how many embeddings went; a KeyError if there is no such identity."""
        name = check_name(name)
        with self._write():
            row = self._db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(f"no identity named {name!r} in {self.path}")
            (count,) = self._db.execute("SELECT COUNT(*) FROM embeddings WHERE identity = ?", row).fetchone()
            self._db.execute("DELETE FROM embeddings WHERE identity = ?", row)
            self._db.execute("DELETE FROM identities WHERE id = ?", row)
        return int(count)

    # --- reading
    def identities(self, encoder_id: str | None = None) -> list[Identity]:
        """Every identity, sorted by name, with its number of embeddings (for ``encoder_id``, and in all)."""
        rows = self._db.execute(
            "SELECT i.name, COALESCE(SUM(e.encoder = ?), 0), COUNT(e.id) FROM identities i "
            "LEFT JOIN embeddings e ON e.identity = i.id GROUP BY i.id ORDER BY i.name", (encoder_id,)).fetchall()
        return [Identity(name, int(mine) if encoder_id is not None else int(total), int(total))
                for name, mine, total in rows]

    def encoders(self) -> list[tuple[str, int, str]]:
        return [tuple(r) for r in self._db.execute("SELECT id, dim, description FROM encoders ORDER BY id")]

    def _vectors(self, rows, encoder_id):
        dims = {int(r[1]) for r in rows}
        if len(dims) > 1:
            raise FaceDatabaseError(f"{self.path}: embeddings of encoder {encoder_id} have different lengths {dims}")
        out = []
        for r in rows:
            blob, dim = r[2], int(r[1])
            if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                raise FaceDatabaseError(f"{self.path}: an embedding of {r[0]!r} is damaged ({len(blob)} bytes for "
                                        f"{dim} numbers)")
            out.append(np.frombuffer(blob, dtype="<f4"))
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def gallery(self, encoder_id: str):
        """Everything enrolled with ``encoder_id``, read in one statement (one consistent state):
        ``(names, E, image_paths)``, a name and an image path per row of E (n, D)."""
        rows = self._db.execute(
            "SELECT i.name, e.dim, e.vector, e.image_path FROM embeddings e JOIN identities i ON i.id = e.identity "
            "WHERE e.encoder = ? ORDER BY i.name, e.id", (encoder_id,)).fetchall()
        return [r[0] for r in rows], self._vectors(rows, encoder_id), [r[3] for r in rows]

    def embeddings_of(self, name, encoder_id: str):
        """``(E, image_paths)`` of identity ``name`` made by ``encoder_id``. A KeyError when there
        is no such identity; a LookupError when it has embeddings of other encoders only."""
        name = check_name(name)
        rows = self._db.execute(
            "SELECT i.name, e.dim, e.vector, e.image_path, e.encoder FROM identities i "
            "LEFT JOIN embeddings e ON e.identity = i.id WHERE i.name = ?", (name,)).fetchall()
        if not rows:
            raise KeyError(f"no identity named {name!r} in {self.path}")
        mine = [r for r in rows if r[4] == encoder_id]
        if not mine:
            others = sorted({r[4] for r in rows if r[4] is not None})
            raise LookupError(f"{name!r} was enrolled with another encoder ({', '.join(others) or 'none'}), not with "
                              f"this one ({encoder_id}): embeddings of two encoders are never compared; enroll "
                              f"{name!r} again with this encoder")
        return self._vectors(mine, encoder_id), [r[3] for r in mine]
