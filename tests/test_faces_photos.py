"""Real faces end to end, detector included: the shipped photos through find -> crop -> encode ->
compare, the face database and `nbcnn faces enroll / verify / who` with the dlib encoder.

The photos (nbcnn/assets/faces/NOTICE.md): obama, obama2, obama3 are three photos of one
person; biden, grace_hopper and astronaut (../astronaut.jpg) three other people; group.jpg a
2 x 2 montage of obama3, biden, grace_hopper and astronaut."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
import nbcnn
from nbcnn.triplet import app as faces_app
from nbcnn.triplet.database import FaceDatabase
from nbcnn.triplet.dlib_encoder import load_dlib_encoder
from nbcnn.triplet.face_crop import crop_face, face_square, read_photo
from nbcnn.triplet.face_pipeline import find_faces, main_face

ASSETS = Path(__file__).resolve().parents[1] / "nbcnn" / "assets"
PHOTOS = {name: ASSETS / "faces" / f"{name}.jpg" for name in ("obama", "obama2", "obama3", "biden", "grace_hopper")}
PHOTOS["astronaut"] = ASSETS / "astronaut.jpg"
GROUP = ASSETS / "faces" / "group.jpg"
OTHERS = ("biden", "grace_hopper", "astronaut")


@pytest.fixture(scope="module")
def encoder():
    with nbcnn.use_backend("cpu"):
        yield load_dlib_encoder()


@pytest.fixture(scope="module")
def embeddings(encoder):
    """The largest face of each photo, found by the detector and encoded."""
    with nbcnn.use_backend("cpu"):
        return {name: main_face(find_faces(read_photo(path), encoder), name).embedding for name, path in PHOTOS.items()}


def test_same_person_below_and_others_above_the_threshold(encoder, embeddings):
    d = {(a, b): float(encoder.distances(embeddings[a][None], embeddings[b][None])[0, 0])
         for a in embeddings for b in embeddings}
    for a, b in [("obama", "obama2"), ("obama", "obama3"), ("obama2", "obama3")]:
        assert d[a, b] < 0.6, (a, b, d[a, b])
    for a in ("obama", "obama2", "obama3"):
        for b in OTHERS:
            assert d[a, b] > 0.6, (a, b, d[a, b])
    for a, b in [("biden", "grace_hopper"), ("biden", "astronaut"), ("grace_hopper", "astronaut")]:
        assert d[a, b] > 0.6, (a, b, d[a, b])


def test_group_photo_every_face_found_and_encoded(encoder, embeddings):
    with nbcnn.use_backend("cpu"):
        faces = find_faces(read_photo(GROUP), encoder)
    assert len(faces) == 4
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    # each montage cell (200 x 200) holds one face; its nearest portrait is the person in that cell
    cell_person = {(0, 0): "obama3", (1, 0): "biden", (0, 1): "grace_hopper", (1, 1): "astronaut"}
    for face in faces:
        x1, y1, x2, y2 = face.box
        cell = (int((x1 + x2) / 2 // 200), int((y1 + y2) / 2 // 200))
        nearest = min(embeddings, key=lambda n: np.linalg.norm(face.embedding - embeddings[n]))
        expected = cell_person[cell]
        assert nearest == expected or (expected == "obama3" and nearest.startswith("obama")), (cell, nearest)


def test_enroll_verify_who_through_the_database(encoder, tmp_path):
    db = tmp_path / "faces.db"
    with nbcnn.use_backend("cpu"):
        r = faces_app.enroll(db, encoder, "obama", [PHOTOS["obama"]])
        assert r == {"name": "obama", "added": 1, "skipped": 0, "total": 1}
        faces_app.enroll(db, encoder, "biden", [PHOTOS["biden"]])
        for name in ("obama2", "obama3"):
            v = faces_app.verify_file(db, encoder, PHOTOS[name], "obama")
            assert v.match and v.distance < 0.6 and v.threshold == 0.6
        for name in ("grace_hopper", "astronaut"):
            assert not faces_app.verify_file(db, encoder, PHOTOS[name], "obama").match
        (path, who), = faces_app.who(db, encoder, [PHOTOS["obama3"]])
        assert who.name == "obama"
        (_, who), = faces_app.who(db, encoder, [PHOTOS["grace_hopper"]])
        assert who.name is None and who.distance > 0.6
    with FaceDatabase(db, create=False) as stored:
        (encoder_id, dim, description), = stored.encoders()
    assert encoder_id == encoder.encoder_id and dim == 128
    assert "euclidean" in description and "0.6" in description


def test_a_photo_without_a_face_is_refused_by_name(encoder, tmp_path):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 160), (128, 128, 128)).save(blank)
    with nbcnn.use_backend("cpu"), pytest.raises(ValueError, match=r"wall\.png: no face found"):
        faces_app.enroll(tmp_path / "f.db", encoder, "nobody", [blank])


def test_cli_enroll_verify_who_draws_the_group(tmp_path):
    def run(*args):
        return CliRunner().invoke(cli.main, ["faces", *[str(a) for a in args], "--db", tmp_path / "f.db",
                                             "--backend", "cpu"])

    out = run("enroll", "obama", PHOTOS["obama"])
    assert out.exit_code == 0, out.output
    assert "enrolled 1 image(s) of obama; 1 stored for encoder dlib-" in out.output
    assert run("enroll", "grace", PHOTOS["grace_hopper"]).exit_code == 0
    out = run("verify", PHOTOS["obama2"], "obama")
    assert out.exit_code == 0 and "yes, it is obama (distance 0.4" in out.output, out.output
    picture = tmp_path / "who.png"
    out = run("who", GROUP, "-o", picture)
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if ": face " in line]
    assert len(lines) == 4
    assert sum(": obama (distance" in line for line in lines) == 1
    assert sum(": grace (distance" in line for line in lines) == 1
    assert sum(": unknown (nearest:" in line for line in lines) == 2
    assert picture.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- the crop


def test_face_square_is_centred_on_the_box_and_square():
    assert face_square((10, 20, 50, 40)) == (10, 10, 50, 50)           # 40 x 20 box -> 40 x 40 square
    assert face_square((10, 20, 50, 40), margin=0.25) == (0, 0, 60, 60)  # 40 * 1.5 = 60
    with pytest.raises(ValueError, match="x1 < x2"):
        face_square((10, 20, 5, 40))
    with pytest.raises(ValueError, match="margin"):
        face_square((0, 0, 10, 10), margin=-0.1)


def test_crop_face_of_a_150_box_is_the_pixels_and_outside_is_black():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(200, 220, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_face(photo, (30, 20, 180, 170)), photo[20:170, 30:180])
    chip = crop_face(photo, (-75, -75, 75, 75))  # three quarters outside the photo
    np.testing.assert_array_equal(chip[:75, :], 0)
    np.testing.assert_array_equal(chip[75:, 75:], photo[:75, :75])
    with pytest.raises(TypeError, match="uint8"):
        crop_face(photo.astype(np.float32), (0, 0, 10, 10))
