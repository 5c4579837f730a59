"""`nbcnn faces`: train, eval, enroll, verify, who, list, remove, through click's CliRunner (tiny
encoders: the real training run is in the README)."""

import re

import pytest
from click.testing import CliRunner

import cli
from nbcnn.data import load_digits
from nbcnn.images import save_image
from nbcnn.triplet import load_encoder


def run(*args):
    return CliRunner().invoke(cli.main, ["faces", *[str(a) for a in args]])


def assert_clean_error(result, *words):
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny encoder trained for 2 steps on 40 digits of each class (seconds), and digit PNGs."""
    folder = tmp_path_factory.mktemp("faces")
    model = folder / "enc.nbcnn"
    result = run("train", "--epochs", 1, "--steps-per-epoch", 2, "--width", 2, "--dim", 2, "--per-class", 40,
                 "--P", 3, "--K", 4, "--quiet", "--out", model)
    assert result.exit_code == 0, result.output
    x, y = load_digits(split="all")
    images = {f"{d}_{k}": save_image(folder / f"{d}_{k}.png", x[y == d][k][:, :, 0]) for d in (6, 7) for k in range(2)}
    return folder, model, result.output, images


def test_train_reports_the_split_the_threshold_and_the_unseen_auc(trained):
    _, model, output, _ = trained
    assert "seen identities:   0, 1, 2, 3, 4, 5" in output and "unseen identities: 6, 7, 8, 9" in output
    assert re.search(r"threshold [0-9.]+: validation accuracy", output)
    assert re.search(r"unseen pairs: ROC AUC 0\.\d{4}", output)
    enc = load_encoder(model)
    assert enc.info["unseen"] == ["6", "7", "8", "9"] and enc.threshold is not None


def test_eval_prints_auc_lfw_and_one_shot_and_draws_the_roc(trained, tmp_path):
    _, model, _, _ = trained
    roc = tmp_path / "roc.png"
    result = run("eval", "--model", model, "--pairs", 100, "--trials", 2, "--roc", roc)
    assert result.exit_code == 0, result.output
    for words in ("ROC AUC", "accuracy at the stored threshold", "LFW protocol (10 folds of 100 pairs)", "VAL",
                  "1-shot recognition of 4 identities", "5-shot"):
        assert words in result.output
    assert roc.read_bytes()[:4] == b"\x89PNG"


def test_enroll_verify_who_list_remove(trained, tmp_path):
    _, model, _, images = trained
    db = tmp_path / "faces.db"
    out = run("enroll", "six", images["6_0"], images["6_1"], "--model", model, "--db", db)
    assert out.exit_code == 0 and "enrolled 2 image(s) of six" in out.output
    assert "(1 already enrolled)" in run("enroll", "six", images["6_0"], "--model", model, "--db", db).output
    assert run("enroll", "seven", images["7_0"], "--model", model, "--db", db).exit_code == 0
    out = run("verify", images["6_1"], "six", "--model", model, "--db", db)
    assert out.exit_code == 0 and "yes, it is six (distance 0.0000" in out.output
    out = run("who", images["7_0"], "--model", model, "--db", db)
    assert out.exit_code == 0 and "7_0.png: seven (distance 0.0000)" in out.output
    out = run("list", "--model", model, "--db", db)
    assert out.output.splitlines() == ["seven: 1 image(s)", "six: 2 image(s)"]
    out = run("remove", "six", "--db", db)
    assert out.exit_code == 0 and "removed six (2 image(s))" in out.output
    assert_clean_error(run("verify", images["6_1"], "six", "--model", model, "--db", db), "no identity named 'six'")
    assert_clean_error(run("remove", "six", "--db", db), "no identity named 'six'")


def test_faces_errors_are_one_line(trained, tmp_path):
    _, model, _, images = trained
    assert_clean_error(run("who", images["6_0"], "--model", tmp_path / "none.nbcnn"), "nbcnn faces train --out")
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    assert_clean_error(run("list", "--db", junk), "not an nbcnn face database")
    assert junk.read_text() == "hello"
    assert_clean_error(run("list", "--db", tmp_path / "missing.db"), "enroll someone first")
    assert_clean_error(run("train", "--unseen", "eleven", "--out", tmp_path / "x.nbcnn"), "unknown identity 'eleven'")
