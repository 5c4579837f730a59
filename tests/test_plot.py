"""nbcnn.plot: every picture runs headless, writes a PNG of the expected size, and holds the
expected panels, lines and values (read back from the Figure's artists, never pixel hashes).

Oracles: the numbers passed in (each panel's image data, each line's points), the
Mann-Whitney U statistic and hand-computed trapezoids for the ROC area, the mean precision at
each positive's rank for the average precision.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

import cli
import nbcnn
from nbcnn import edges, plot
from nbcnn.images import sample_image_path, save_image

REPO = Path(__file__).resolve().parents[1]


def png_size(fig: Figure, tmp_path, name="fig.png"):
    """Save through plot.save and read the PNG's (width, height) back."""
    path = plot.save(fig, tmp_path / name)
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def image_axes(fig: Figure):
    """The panels that show an image (colour bars hold none)."""
    return [ax for ax in fig.axes if ax.images]


def data_of(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


# --------------------------------------------------------------------------- headless, display


def test_drawing_needs_no_display_and_never_imports_pyplot(tmp_path):
    """An interactive backend that cannot start here (no display) must not matter: nbcnn.plot
    builds Figure objects and saves them with Agg, never through pyplot."""
    script = (
        "import sys, numpy as np\n"
        "from nbcnn import plot\n"
        "fig = plot.learning_curves({'loss': [2.0, 1.0], 'val_loss': [2.1, 1.4]})\n"
        f"plot.save(fig, {str(tmp_path / 'c.png')!r})\n"
        "plot.save(plot.roc_curve([0.1, 0.9, 0.4], [False, True, True]), "
        f"{str(tmp_path / 'r.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"  # an interactive backend; would fail without a display if used
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "c.png").size == (500, 400)


def test_a_figure_shows_itself_inline_in_jupyter():
    fig = plot.image_grid([np.zeros((4, 4))])
    assert isinstance(fig, Figure)
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG")
    formatters = pytest.importorskip("IPython.core.formatters")
    assert formatters.PNGFormatter()(fig).startswith(b"\x89PNG")  # what a notebook cell shows


def test_save_into_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot.save(plot.image_grid([np.zeros((4, 4))]), tmp_path / "no" / "x.png")


# --------------------------------------------------------------------------- training


HISTORY = {"loss": [2.3, 1.2, 0.6, 0.4], "val_loss": [2.2, 1.3, 0.8, 0.7],
           "accuracy": [0.2, 0.6, 0.8, 0.9], "val_accuracy": [0.25, 0.55, 0.75, 0.8], "lr": [1e-3] * 4}


def test_learning_curves_draw_loss_and_accuracy_training_and_validation(tmp_path):
    fig = plot.learning_curves(HISTORY, title="LeNet-5", validation_label="test")
    assert png_size(fig, tmp_path) == (1000, 400)
    loss, accuracy = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax, key in ((loss, "loss"), (accuracy, "accuracy")):
        train, val = ax.get_lines()
        assert train.get_label() == "training" and val.get_label() == "test"
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(train.get_ydata(), HISTORY[key])
        np.testing.assert_allclose(val.get_ydata(), HISTORY[f"val_{key}"])
        assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
    assert fig.get_suptitle() == "LeNet-5"


def test_learning_curves_show_what_the_history_has():
    fig = plot.learning_curves({"loss": [1.0, 0.5], "accuracy": []})  # no validation, no accuracy
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1

    class Fitted:  # a model: its .history is used
        history = {"accuracy": [0.5, 0.7]}

    assert [ax.get_title() for ax in plot.learning_curves(Fitted()).axes] == ["accuracy"]
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plot.learning_curves({"lr": [1.0]})


def test_depth_experiment_one_line_per_net_plain_dashed(tmp_path):
    curves = {"plain 3 conv": [0.5, 0.3], "residual 3 conv": [0.45, 0.25],
              "plain 21 conv": [0.9, 0.8], "residual 21 conv": [0.4, 0.2]}
    fig = plot.depth_experiment(curves)
    assert png_size(fig, tmp_path) == (640, 400)
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == list(curves)
    assert [l.get_linestyle() for l in lines] == ["--", "-", "--", "-"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color() == lines[3].get_color()
    for line, errors in zip(lines, curves.values()):
        np.testing.assert_allclose(line.get_ydata(), errors)


def test_confusion_matrix_holds_the_counts(tmp_path):
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    fig = plot.confusion_matrix(y_true, y_pred, labels=["cat", "dog", "bird"])
    assert png_size(fig, tmp_path) == (550, 450)
    ax = image_axes(fig)[0]
    np.testing.assert_array_equal(data_of(ax), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1", "2"]  # zeros left blank
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert "66.67%" in ax.get_title() and "6 examples" in ax.get_title()
    assert len(fig.axes) == 2  # the matrix and its colour bar
    with pytest.raises(ValueError, match="0..2"):
        plot.confusion_matrix([0, 3], [0, 1], labels=["a", "b", "c"])
    with pytest.raises(TypeError, match="integers"):
        plot.confusion_matrix([0.5], [0])


# --------------------------------------------------------------------------- inside a network


def titles_in(ax):
    return [t.get_text() for t in ax.texts]


def test_filters_of_a_grey_layer_one_panel_each_on_one_scale(tmp_path):
    W = np.random.default_rng(0).normal(size=(5, 5, 1, 6)).astype(np.float32)
    fig = plot.filters(W)
    assert png_size(fig, tmp_path) == (350, 260)  # 3 x 2 panels of 0.8 in (with gaps), the colour bar
    grid, colour_bar = fig.axes
    assert len(grid.images) == 6  # one image per filter, in one Axes
    assert titles_in(grid) == [str(k) for k in range(6)]
    assert colour_bar.get_ylabel() == "weight"
    limit = np.abs(W).max()
    for k, image in enumerate(grid.images):
        np.testing.assert_allclose(image.get_array(), W[:, :, 0, k])
        assert image.get_clim() == pytest.approx((-limit, limit))  # 0 is mid-grey in every panel
    # the panels sit left to right, then the next row
    (x0, _, _, y0), (x1, _, _, _), (_, _, _, y3) = (grid.images[k].get_extent() for k in (0, 1, 3))
    assert x1 > x0 and y3 > y0


def test_filters_of_an_rgb_layer_in_colour_and_of_a_deep_layer_as_a_grid():
    rgb = np.random.default_rng(1).normal(size=(3, 3, 3, 8))
    fig = plot.filters(rgb)
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 8  # no colour bar: each filter its own range
    first = np.asarray(fig.axes[0].images[0].get_array())
    assert first.shape == (3, 3, 3) and first.min() == 0 and first.max() == 1
    np.testing.assert_allclose(first, (rgb[..., 0] - rgb[..., 0].min()) / np.ptp(rgb[..., 0]))

    deep = np.random.default_rng(2).normal(size=(5, 5, 6, 16))
    grid = plot.filters(deep).axes[0]
    assert len(grid.images) == 6 * 16  # a row per input channel, a column per filter
    np.testing.assert_allclose(grid.images[16 * 2 + 5].get_array(), deep[:, :, 2, 5])
    assert [t.get_text() for t in grid.get_yticklabels()] == [f"in {c}" for c in range(6)]
    assert titles_in(grid) == [str(k) for k in range(16)]  # filter numbers over the first row
    assert len(plot.filters(deep, channel=2).axes[0].images) == 16
    assert len(plot.filters(deep, max_filters=4, max_channels=2).axes[0].images) == 2 * 4
    with pytest.raises(ValueError, match="f, f, C_in, C_out"):
        plot.filters(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="channel 6"):
        plot.filters(deep, channel=6)


def test_many_filters_draw_quickly():
    """500 panels in one Axes: an Axes per panel took ~50 s here."""
    import io
    import time

    start = time.perf_counter()
    fig = plot.filters(np.random.default_rng(0).normal(size=(3, 3, 512, 512)))
    fig.savefig(io.BytesIO(), format="png")
    assert len(fig.axes[0].images) == 8 * 64
    assert time.perf_counter() - start < 20


def test_feature_maps_one_panel_per_channel_after_the_input(tmp_path):
    rng = np.random.default_rng(3)
    a = np.maximum(rng.normal(size=(1, 12, 12, 6)), 0).astype(np.float32)
    image = rng.random((16, 16, 1))
    fig = plot.feature_maps(a, image=image, title="C1")
    assert png_size(fig, tmp_path) == (760, 463)  # the input, 3 x 2 maps of 1.6 in, the colour bar
    left, maps, colour_bar = fig.axes
    assert left.get_title() == "input"
    np.testing.assert_allclose(left.images[0].get_array(), image[:, :, 0])
    assert titles_in(maps) == [f"channel {k}" for k in range(6)]
    for k, im in enumerate(maps.images):
        np.testing.assert_allclose(im.get_array(), a[0, :, :, k])
        assert im.get_clim() == pytest.approx((a.min(), a.max()))
    assert fig.get_suptitle() == "C1"
    own = plot.feature_maps(a[0], same_scale=False)
    assert len(own.axes) == 1 and len(own.axes[0].images) == 6  # no input, no colour bar
    assert own.axes[0].images[1].get_clim() == pytest.approx((a[0, :, :, 1].min(), a[0, :, :, 1].max()))
    with pytest.raises(ValueError, match="one example"):
        plot.feature_maps(np.zeros((2, 4, 4, 3)))


def test_the_lecture_convolution_as_three_grids_of_numbers(tmp_path):
    x, f, z = edges.lecture_example("vertical")
    fig = plot.convolution_example(x, f, z)
    assert png_size(fig, tmp_path) == (685, 370)
    grids = image_axes(fig)
    assert [ax.get_title() for ax in grids] == ["image 6x6", "filter 3x3", "output 4x4"]
    for ax, want in zip(grids, (x, f, z)):
        np.testing.assert_array_equal(data_of(ax), want)
        assert len(ax.texts) == want.size
    assert [t.get_text() for t in grids[2].texts] == ["0", "30", "30", "0"] * 4
    assert sorted(t.get_text() for ax in fig.axes if not ax.images for t in ax.texts) == ["*", "="]


def test_edges_lecture_figure_stacks_both_directions(tmp_path):
    fig = edges.lecture_figure("both")
    assert png_size(fig, tmp_path) == (700, 740)
    grids = image_axes(fig)
    assert len(grids) == 6
    np.testing.assert_array_equal(data_of(grids[5]), edges.lecture_example("horizontal").output)
    assert len(image_axes(edges.lecture_figure("horizontal"))) == 3


# --------------------------------------------------------------------------- ROC and precision-recall


def mann_whitney_auc(values, same, larger_means_same=True):
    """P(a random positive ranks above a random negative), ties counting a half: the ROC's area."""
    values = np.asarray(values, dtype=float) * (1 if larger_means_same else -1)
    pos = values[np.asarray(same, bool)]
    neg = values[~np.asarray(same, bool)]
    u = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return u / (len(pos) * len(neg))


def test_roc_numbers_on_a_hand_made_set():
    # ranked: 0.8 same, 0.4 different, 0.35 same, 0.1 different
    r = plot.roc_numbers([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    np.testing.assert_allclose(r.fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(r.tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(r.thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    # trapezoids: 0 * ... + 0.5 * (0.5 + 0.5) / 2 + 0 + 0.5 * (1 + 1) / 2 = 0.25 + 0.5
    assert r.auc == pytest.approx(0.75)
    assert r.auc == pytest.approx(mann_whitney_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]))


def test_roc_with_ties_is_a_diagonal_step_whose_area_counts_them_half():
    r = plot.roc_numbers([0.5, 0.5, 0.9, 0.1], [True, False, True, False])
    np.testing.assert_allclose(r.fpr, [0, 0, 0.5, 1])  # the tied pair moves both rates at once
    np.testing.assert_allclose(r.tpr, [0, 0.5, 1, 1])
    assert r.auc == pytest.approx(0.875) == mann_whitney_auc([0.5, 0.5, 0.9, 0.1], [1, 0, 1, 0])


@pytest.mark.parametrize("seed", range(5))
def test_roc_area_is_the_mann_whitney_statistic(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(60) < 0.4
    values = np.round(rng.normal(same * 0.8, 1.0), 1)  # rounded: many ties
    r = plot.roc_numbers(values, same)
    assert r.auc == pytest.approx(mann_whitney_auc(values, same), abs=1e-12)
    # each point is the rates of "same iff value >= threshold"
    for fpr, tpr, t in zip(r.fpr, r.tpr, r.thresholds):
        assert tpr == pytest.approx(np.mean(values[same] >= t)) and fpr == pytest.approx(np.mean(values[~same] >= t))
    # distances: smaller means same, the same ranking reversed
    d = plot.roc_numbers(-values, same, kind="distance")
    assert d.auc == pytest.approx(r.auc)
    np.testing.assert_allclose(d.thresholds, -r.thresholds)


def test_roc_refuses_what_has_no_curve():
    with pytest.raises(ValueError, match="both kinds"):
        plot.roc_numbers([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        plot.roc_numbers([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="kind"):
        plot.roc_numbers([0.1, 0.2], [True, False], kind="similarity")
    with pytest.raises(ValueError, match="same length"):
        plot.roc_numbers([0.1, 0.2, 0.3], [True, False])


def test_roc_curve_draws_the_numbers_and_marks_the_threshold(tmp_path):
    rng = np.random.default_rng(7)
    same = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    distances = np.r_[rng.normal(0.6, 0.2, 40), rng.normal(1.1, 0.25, 60)]
    fig = plot.roc_curve(distances, same, kind="distance", threshold=0.8, label="encoder")
    assert png_size(fig, tmp_path) == (500, 500)
    ax = fig.axes[0]
    chance, curve, mark = ax.get_lines()
    r = plot.roc_numbers(distances, same, kind="distance")
    np.testing.assert_allclose(curve.get_xdata(), r.fpr)
    np.testing.assert_allclose(curve.get_ydata(), r.tpr)
    assert curve.get_label() == f"encoder (AUC {r.auc:.3f})"
    np.testing.assert_allclose(chance.get_xydata(), [[0, 0], [1, 1]])
    np.testing.assert_allclose(mark.get_xydata(), [[np.mean(distances[~same] <= 0.8), np.mean(distances[same] <= 0.8)]])
    # a second curve on the same chart: one more line, no second diagonal
    assert plot.roc_curve(distances + rng.normal(0, 0.3, 100), same, kind="distance", ax=ax) is fig
    assert len(ax.get_lines()) == 4 and len(fig.axes) == 1


def test_average_precision_is_the_mean_precision_at_each_positive():
    pr = plot.precision_recall_numbers([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    np.testing.assert_allclose(pr.recall, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(pr.precision, [1, 1, 0.5, 2 / 3, 0.5])
    assert pr.average_precision == pytest.approx((1 + 2 / 3) / 2)

    rng = np.random.default_rng(11)
    values = rng.random(50)  # no ties
    same = rng.random(50) < 0.3
    ranked = same[np.argsort(-values)]
    hits = np.cumsum(ranked)
    want = np.mean((hits / np.arange(1, 51))[ranked])  # precision at each positive's rank
    assert plot.precision_recall_numbers(values, same).average_precision == pytest.approx(want)


def test_precision_recall_curve_draws_the_numbers(tmp_path):
    rng = np.random.default_rng(5)
    same = rng.random(80) < 0.25
    scores = rng.normal(same * 1.5, 1.0)
    fig = plot.precision_recall_curve(scores, same, threshold=0.5, label="dog")
    assert png_size(fig, tmp_path) == (500, 500)
    chance, curve, mark = fig.axes[0].get_lines()
    pr = plot.precision_recall_numbers(scores, same)
    np.testing.assert_allclose(curve.get_xdata(), pr.recall)
    np.testing.assert_allclose(curve.get_ydata(), pr.precision)
    assert chance.get_ydata()[0] == pytest.approx(same.mean())
    assert f"AP {pr.average_precision:.3f}" in curve.get_label()
    said = scores >= 0.5
    hits = np.sum(said & same)
    np.testing.assert_allclose(mark.get_xydata(), [[hits / same.sum(), hits / said.sum()]])


# --------------------------------------------------------------------------- images


def test_image_grid_nine_patches_three_by_three(tmp_path):
    images = np.random.default_rng(0).random((9, 8, 8, 3))
    fig = plot.image_grid(images, titles=[f"patch {i}" for i in range(9)], title="top 9")
    assert png_size(fig, tmp_path) == (600, 700)
    assert len(fig.axes) == 9
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(3, 3)}
    assert [ax.get_title() for ax in fig.axes] == [f"patch {i}" for i in range(9)]
    np.testing.assert_allclose(data_of(fig.axes[4]), images[4])


def test_image_grid_takes_grey_uint8_and_odd_ranges():
    grey = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 15
    fig = plot.image_grid([grey, (grey * 255).astype(np.uint8), grey * 10 - 3], cols=2)
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 2)}
    assert fig.axes[0].images[0].get_clim() == (0, 1)
    assert fig.axes[1].images[0].get_clim() == (0, 255)
    assert fig.axes[2].images[0].get_clim() == pytest.approx((-3, 7))  # stretched to its own range
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        plot.image_grid([grey] * 3, titles=["a", "b"])


def test_boxes_draws_one_labelled_rectangle_per_detection(tmp_path):
    from nbcnn.detection.yolo import Detection

    photo = np.asarray(Image.open(sample_image_path("dog.jpg"))) / 255.0  # 768 x 576
    found = [Detection("dog", 16, 0.56, (129.0, 187.0, 369.0, 518.0), 0.9),
             Detection("bicycle", 1, 0.59, (206.0, 151.0, 576.0, 450.0), 0.8),
             Detection("dog", 16, 0.30, (10.0, 10.0, 50.0, 60.0), 0.5)]
    fig = plot.boxes(photo, found, title="dog.jpg")
    assert png_size(fig, tmp_path) == (800, 640)
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    first = ax.patches[0]
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (129, 187, 240, 331)
    assert [t.get_text() for t in ax.texts] == ["dog 0.56", "bicycle 0.59", "dog 0.30"]
    assert ax.patches[0].get_edgecolor() == ax.patches[2].get_edgecolor() != ax.patches[1].get_edgecolor()
    # the same from plain lists
    fig = plot.boxes(photo, boxes=[[1, 2, 30, 40]], labels=["cat"], scores=[0.9])
    assert [t.get_text() for t in fig.axes[0].texts] == ["cat 0.90"] and len(fig.axes[0].patches) == 1
    from_file = plot.boxes(sample_image_path("dog.jpg"), [{"box": (1, 2, 3, 4), "label": "x", "score": 0.5}])
    assert len(from_file.axes[0].patches) == 1
    np.testing.assert_allclose(data_of(from_file.axes[0]), photo, atol=1e-6)


# --------------------------------------------------------------------------- a model's filters and maps


@pytest.fixture
def tiny_model():
    model = nbcnn.Sequential([nbcnn.Conv2D(4, 3, name="C1"), nbcnn.ReLU(), nbcnn.MaxPooling2D(2),
                              nbcnn.Conv2D(5, 3, padding="same", name="C2"), nbcnn.Flatten(),
                              nbcnn.Dense(3, name="out")], input_shape=(8, 8, 1), seed=0)
    return model


def test_layer_output_is_the_layer_and_its_activation(tiny_model):
    x = np.random.default_rng(0).random((1, 8, 8, 1)).astype(np.float32)
    with nbcnn.use_backend("python"):
        name, out = plot.layer_output(tiny_model, x)
        conv = tiny_model.layers[0]
        want = np.maximum(np.asarray(conv.forward(x))[0], 0)
        assert name == "layer 0 Conv2D 'C1' + relu"
        np.testing.assert_allclose(out, want, rtol=1e-6)
        name, raw = plot.layer_output(tiny_model, x, "C1", activation=False)
        assert name == "layer 0 Conv2D 'C1'" and raw.min() < 0
        name, c2 = plot.layer_output(tiny_model, x, 3)
        assert name == "layer 3 Conv2D 'C2'" and c2.shape == (3, 3, 5)
    assert "forward" not in vars(tiny_model.layers[1])  # the capture hook is gone
    with pytest.raises(ValueError, match="no layer 'C9'.*0 Conv2D 'C1'"):
        plot.find_layer(tiny_model, "C9")
    with pytest.raises(ValueError, match="not a Conv2D"):
        plot.model_filters(tiny_model, "out")


def test_model_filters_and_feature_maps(tiny_model, tmp_path):
    fig = plot.model_filters(tiny_model, "C2")
    assert "layer 3 Conv2D 'C2'" in fig.get_suptitle()
    assert len(fig.axes[0].images) == 4 * 5  # 4 input channels x 5 filters
    np.testing.assert_allclose(fig.axes[0].images[7].get_array(), tiny_model.layers[3].params["W"][:, :, 1, 2])
    image = tmp_path / "in.png"
    save_image(image, np.random.default_rng(1).random((20, 30)))  # resized to the model's 8 x 8
    with nbcnn.use_backend("python"):
        fig = plot.model_feature_maps(tiny_model, image)
    left, maps, _ = fig.axes
    assert left.get_title() == "input" and data_of(left).shape == (8, 8)
    assert titles_in(maps) == ["channel 0", "channel 1", "channel 2", "channel 3"]


# --------------------------------------------------------------------------- the command line draws with these


def spy(monkeypatch, name):
    """Record the Figures nbcnn.plot.<name> returns while a command runs."""
    made = []
    original = getattr(plot, name)

    def wrapper(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(plot, name, wrapper)
    return made


def test_show_filters_and_features_draw_a_saved_model(tiny_model, tmp_path, monkeypatch):
    saved = tmp_path / "m.nbcnn"
    tiny_model.save(saved)
    drawn = spy(monkeypatch, "filters")
    out = tmp_path / "f.png"
    result = CliRunner().invoke(cli.main, ["show", "filters", str(saved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(drawn) == 1 and "layer 0 Conv2D 'C1'" in result.output
    with Image.open(out) as im:
        assert im.size == tuple(int(v) for v in drawn[0].get_size_inches() * drawn[0].dpi)

    maps = spy(monkeypatch, "feature_maps")
    image = tmp_path / "in.png"
    save_image(image, np.random.default_rng(1).random((8, 8)))
    out = tmp_path / "maps.png"
    result = CliRunner().invoke(cli.main, ["show", "features", str(saved), str(image), "--layer", "C2",
                                           "--backend", "python", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(maps) == 1 and len(maps[0].axes[1].images) == 5
    assert out.exists() and "backend python" in result.output

    for args, words in ((["filters", str(saved), "--layer", "nope"], ["no layer 'nope'"]),
                        (["filters", str(saved), "--layer", "out"], ["not a Conv2D"]),
                        (["filters", str(image)], ["in.png"]),
                        (["features", str(saved), str(image), "--out", str(tmp_path / "no" / "x.png")],
                         ["does not exist"])):
        result = CliRunner().invoke(cli.main, ["show", *args])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        for word in words:
            assert word in result.output


def test_edges_command_draws_the_lecture_example(tmp_path, monkeypatch):
    drawn = spy(monkeypatch, "convolution_example")
    out = tmp_path / "v.png"
    result = CliRunner().invoke(cli.main, ["edges", "--backend", "cpu", "--direction", "vertical", "--width", "24",
                                           "--filter", "lecture", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lecture = tmp_path / "v_lecture.png"
    assert f"Wrote {lecture}" in result.output
    assert len(drawn) == 1
    np.testing.assert_array_equal(data_of(image_axes(drawn[0])[2]), edges.lecture_example("vertical").output)
    with Image.open(lecture) as im:
        assert im.size == (685, 370)
