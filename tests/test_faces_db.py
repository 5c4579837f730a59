"""The face database: enrol -> verify -> who -> remove, several images per identity, encoders kept
apart, two processes at once, and files that must be refused (and left as they were)."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nbcnn.data import load_digits
from nbcnn.images import save_image
from nbcnn.triplet import FaceDatabase, FaceDatabaseError, build_encoder
from nbcnn.triplet import app as faces

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Three PNGs of a 3, two of a 7 (20x20, white ink on black, as the digits encoder reads them)."""
    folder = tmp_path_factory.mktemp("digits")
    x, y = load_digits(split="all")
    paths = {}
    for d in (3, 7):
        for k in range(3 if d == 3 else 2):
            paths[f"{d}_{k}"] = save_image(folder / f"{d}_{k}.png", x[y == d][k][:, :, 0])
    return paths


@pytest.fixture(scope="module")
def encoder():
    enc = build_encoder((20, 20, 1), embedding_dim=8, width=2, seed=3)
    enc.threshold = 1e-6  # only an image itself is "the same": the round trip is decided by hand
    return enc


def test_enrol_verify_who_remove_round_trip(tmp_path, digit_files, encoder):
    db = tmp_path / "faces.db"
    r = faces.enroll(db, encoder, "three", [digit_files["3_0"], digit_files["3_1"]])
    assert r == {"name": "three", "added": 2, "skipped": 0, "total": 2}
    assert faces.enroll(db, encoder, "seven", [digit_files["7_0"]])["added"] == 1
    again = faces.enroll(db, encoder, "three", [digit_files["3_1"], digit_files["3_2"]])
    assert (again["added"], again["skipped"], again["total"]) == (1, 1, 3)  # the same photo is stored once

    # verify: the nearest of the identity's images counts (3_1 is one of them: distance 0)
    v = faces.verify_file(db, encoder, digit_files["3_1"], "three")
    assert v.match and v.distance == 0.0 and v.enrolled == 3 and v.nearest_image.endswith("3_1.png")
    v = faces.verify_file(db, encoder, digit_files["7_1"], "three")
    assert not v.match and v.distance > encoder.threshold

    # who: the identity of the nearest image, or unknown beyond the threshold
    found = dict(faces.who(db, encoder, [digit_files["7_0"], digit_files["7_1"]]))
    assert found[str(digit_files["7_0"])].name == "seven"
    unknown = found[str(digit_files["7_1"])]
    assert unknown.name is None and unknown.nearest_name in ("three", "seven")

    assert [(i.name, i.embeddings) for i in faces.list_identities(db, encoder)] == [("seven", 1), ("three", 3)]
    assert faces.remove(db, "three") == 3
    assert [i.name for i in faces.list_identities(db)] == ["seven"]
    with pytest.raises(KeyError, match="no identity named 'three'"):
        faces.verify_file(db, encoder, digit_files["3_0"], "three")
    with pytest.raises(KeyError):
        faces.remove(db, "three")


def test_embeddings_of_another_encoder_are_never_compared(tmp_path, digit_files, encoder):
    db = tmp_path / "faces.db"
    faces.enroll(db, encoder, "three", [digit_files["3_0"]])
    other = build_encoder((20, 20, 1), embedding_dim=8, width=2, seed=4)
    other.threshold = 10.0  # would accept anything, if it compared
    assert other.encoder_id != encoder.encoder_id
    with pytest.raises(LookupError, match="enrolled with another encoder"):
        faces.verify_file(db, other, digit_files["3_0"], "three")
    assert faces.who(db, other, [digit_files["3_0"]])[0][1].nearest_name is None  # nobody, for this encoder
    assert [(i.name, i.embeddings, i.all_embeddings) for i in faces.list_identities(db, other)] == [("three", 0, 1)]


def test_names_and_embeddings_are_checked(tmp_path):
    with FaceDatabase(tmp_path / "f.db") as db:
        with pytest.raises(ValueError, match="must not be empty"):
            db.enroll("  ", np.ones((1, 4)), "enc")
        with pytest.raises(TypeError, match="must be a string"):
            db.enroll(3, np.ones((1, 4)), "enc")
        with pytest.raises(ValueError, match="NaN"):
            db.enroll("a", np.full((1, 4), np.nan), "enc")
        db.enroll("a", np.ones((1, 4)), "enc")
        with pytest.raises(ValueError, match="made 4-number embeddings before"):
            db.enroll("b", np.ones((1, 5)), "enc")
        assert [i.name for i in db.identities()] == ["a"]  # the refused enrolment left nothing behind


WRITER = """
import sys, numpy as np
from nbcnn.triplet.database import FaceDatabase
path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(abs(hash(tag)) % 2**32)
for k in range(count):
    with FaceDatabase(path) as db:
        db.enroll(f"{tag}-{k}", rng.standard_normal((3, 16)), "encoder-1")
"""


def _start_writer(path, tag, count):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), tag, str(count)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path):
    path = tmp_path / "faces.db"  # neither process finds it: both may create it
    writers = [_start_writer(path, tag, 25) for tag in ("a", "b")]
    for w in writers:
        out, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    with FaceDatabase(path) as db:
        people = db.identities("encoder-1")
        names, E, _ = db.gallery("encoder-1")
    assert len(people) == 50 and all(p.embeddings == 3 for p in people)
    assert E.shape == (150, 16) and len(names) == 150


def test_a_reader_never_sees_half_an_enrolment(tmp_path):
    path = tmp_path / "faces.db"
    with FaceDatabase(path) as db:
        db.enroll("first", np.random.default_rng(1).standard_normal((3, 16)), "encoder-1")
    writer = _start_writer(path, "w", 40)
    seen = set()
    try:
        deadline = time.time() + 240
        while writer.poll() is None and time.time() < deadline:
            with FaceDatabase(path) as db:
                names, E, _ = db.gallery("encoder-1")
            counts = {n: names.count(n) for n in set(names)}
            assert set(counts.values()) == {3}, counts  # each enrolment (3 images) all or nothing
            seen.add(len(counts))
    finally:
        out, err = writer.communicate(timeout=240)
    assert writer.returncode == 0, err
    assert len(seen) > 1  # the reader did read while the writer wrote


# --------------------------------------------------------------------------- files to refuse


def _filled_db(path):
    with FaceDatabase(path) as db:
        rng = np.random.default_rng(0)
        for k in range(20):
            db.enroll(f"person {k}", rng.standard_normal((4, 64)), "encoder-1")
    return path.read_bytes()


@pytest.mark.parametrize("cut", ["mid-page", "whole-pages", "header"])
def test_a_truncated_database_is_refused_and_left_alone(tmp_path, cut):
    path = tmp_path / "faces.db"
    data = _filled_db(path)
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 4 * page
    keep = {"mid-page": len(data) // 2 + 100, "whole-pages": (len(data) // page // 2) * page, "header": 60}[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(FaceDatabaseError, match="truncated"):
        FaceDatabase(path)
    assert path.read_bytes() == data[:keep]  # never "repaired" or overwritten


def test_a_corrupt_page_is_refused(tmp_path):
    path = tmp_path / "faces.db"
    data = bytearray(_filled_db(path))
    page = int.from_bytes(data[16:18], "big")
    data[2 * page:3 * page] = b"\xa5" * page  # garbage over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(FaceDatabaseError):
        with FaceDatabase(path) as db:
            db.gallery("encoder-1")
    assert path.read_bytes() == bytes(data)


def test_foreign_files_are_refused_and_left_alone(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(FaceDatabaseError, match="another program"):
        FaceDatabase(other)
    assert other.read_bytes() == before

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 20)
    with pytest.raises(FaceDatabaseError, match="not an SQLite file"):
        FaceDatabase(text)
    assert text.read_text() == "not a database\n" * 20

    with pytest.raises(FileNotFoundError, match="enroll someone first"):
        FaceDatabase(tmp_path / "missing.db", create=False)
    with pytest.raises(FaceDatabaseError, match="folder"):
        FaceDatabase(tmp_path)


def test_an_empty_file_becomes_a_new_database(tmp_path):
    path = tmp_path / "faces.db"
    path.write_bytes(b"")
    with FaceDatabase(path) as db:
        assert db.identities() == []
