"""`nbcnn bench` and the nbcnn.benchmark package, on tiny shapes with one run (the real suite is minutes)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import cli
import nbcnn
from nbcnn import benchmark


def bench(*args):
    return CliRunner().invoke(cli.main, ["bench", *args])


def test_gflop_formula_on_vgg_b3():
    # 4 images, 56x56 out (pad 1), 256 filters of 3x3x256: 2 * 4*56*56*256 * 9*256 flops
    s = benchmark.CONV_SHAPES["vgg_b3"]
    assert benchmark.conv_flops(s) == 2 * 4 * 56 * 56 * 256 * 3 * 3 * 256 == 14_797_504_512
    assert benchmark.conv_flops(s, "conv_bwd") == 2 * benchmark.conv_flops(s)
    # stride 2, pad 3, 7x7 on 224: 112x112 out
    assert benchmark.out_size(224, 7, 2, 3) == 112


def test_pool_bytes_count_reads_and_writes():
    s = benchmark.PoolShape(64, 32, 32, 16, 2, 2)
    x, p = 64 * 32 * 32 * 16, 64 * 16 * 16 * 16
    assert benchmark.pool_bytes(s, "maxpool_fwd") == 4 * (x + p)
    assert benchmark.pool_bytes(s, "maxpool_bwd") == 4 * (p + 2 * x)
    assert benchmark.pool_bytes(s, "avgpool_bwd") == 4 * (p + x)


@pytest.mark.parametrize("name", ["seed39", "stem_s2", "incep1x1"])
def test_im2col_peer_equals_nbcnn_conv2d(name):
    s = benchmark.CONV_SHAPES[name]
    small = s._replace(N=2, H=min(s.H, 20), W=min(s.W, 17))  # same f, stride, pad, channels
    x, W, b, _ = benchmark.conv_inputs(small)
    with nbcnn.use_backend("cpu"):
        want = nbcnn.conv2d(x, W, b, small.stride, small.pad)
    np.testing.assert_allclose(benchmark.im2col_conv2d(x, W, b, small.stride, small.pad), want, rtol=1e-4, atol=1e-4)


def test_cpu_peak_is_stated():
    m = benchmark.cpu_peak()
    assert m["peak_gflops"] > 0 and m["cores"] >= 1
    assert "GFLOP/s" in m["assumption"]


def test_cli_tiny_table_and_json():
    r = bench("--tiny", "--repeat", "1", "--no-compile-time")
    assert r.exit_code == 0, r.output
    for op in benchmark.ALL_OPS:
        assert op in r.output
    assert "x torch" in r.output
    r = bench("--tiny", "--repeat", "1", "--no-compile-time", "--no-peers", "--ops", "conv_fwd,maxpool_bwd", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {(rec["op"], rec["impl"]) for rec in data["records"]} == {("conv_fwd", "nbcnn"), ("maxpool_bwd", "nbcnn")}
    assert all(rec["min_s"] > 0 and rec["median_s"] >= rec["min_s"] for rec in data["records"])


def test_cli_python_backend_uses_tiny_shapes():
    r = bench("--backend", "python", "--repeat", "1", "--no-compile-time", "--ops", "maxpool_fwd,dense", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{"):])
    assert data["tiny"] and {rec["shape"] for rec in data["records"]} == {"tinypool", "tinyfc"}


def test_cli_cuda_in_the_simulator_reports_copies_apart():
    if not nbcnn.backend.cuda_simulator_enabled():
        pytest.skip("real GPU: the tiny run is covered by the cpu tests")
    r = bench("--backend", "cuda", "--tiny", "--repeat", "1", "--no-compile-time", "--ops", "maxpool_fwd", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)["records"][0]
    assert rec["backend"] == "cuda" and rec["h2d_s"] > 0 and rec["d2h_s"] > 0
    r = bench("--backend", "cuda", "--repeat", "1")
    assert r.exit_code != 0 and "--tiny" in r.output


def test_cli_ladder_on_the_tiny_shape():
    r = bench("--ladder", "--shape", "tiny", "--repeat", "1", "--no-peers")
    assert r.exit_code == 0, r.output
    assert "readable kernel, python backend" in r.output and "naive compiled loop" in r.output
    assert "peak FP32 assumed" in r.output


@pytest.mark.parametrize("module, args", [
    ("nbcnn.benchmark.worker", ["--worker", "numpy", "--shapes", "tinyfc", "--ops", "dense", "--repeat", "1"]),
    ("nbcnn.benchmark.models", ["--help"]),
])
def test_worker_entry_points_run_fresh(module, args):
    # the parent starts these with `python -m`; -W error::RuntimeWarning: runpy must not find them imported already
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", module, *args], capture_output=True,
                          text=True, cwd=benchmark.runner.package_root())
    assert done.returncode == 0, done.stderr
    if module.endswith("worker"):
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(benchmark.runner.JSON_PREFIX))
        assert json.loads(line[len(benchmark.runner.JSON_PREFIX):])[0]["impl"] == "numpy"


def test_cli_rejects_unknown_shapes_and_ops():
    assert "unknown shape" in bench("--shapes", "nope", "--no-compile-time").output
    assert "unknown op" in bench("--ops", "nope", "--no-compile-time").output
    assert "conv shape" in bench("--ladder", "--shape", "pool32x16").output



def test_cli_models_lenet_training_throughput_tiny():
    r = bench("--models", "--tiny", "--repeat", "1", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["results"]["nbcnn"]["lenet_train"]["images_per_s"] > 0
    if benchmark.torch_available():
        assert data["results"]["torch"]["lenet_train"]["images_per_s"] > 0


def test_cli_threads_runs_nbcnn_and_torch_on_that_many_threads():
    # 3: not the default of this 2-core machine, so the records show the option took effect
    r = bench("--tiny", "--repeat", "1", "--no-compile-time", "--ops", "maxpool_fwd", "--threads", "3", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["threads"] == 3
    impls = {rec["impl"]: rec for rec in data["records"]}
    assert impls["nbcnn"]["threads"] == 3
    if benchmark.torch_available():
        assert impls["torch"]["threads"] == 3
    assert "3 threads each" in benchmark.format_table(data)
    assert "not to --ladder" in bench("--ladder", "--shape", "tiny", "--threads", "1").output
    assert bench("--threads", "0", "--tiny").exit_code != 0


def test_worker_environment_sizes_the_pools_and_puts_them_back(monkeypatch):
    import os

    from nbcnn.benchmark import threads

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    with threads.worker_environment(2):
        assert all(os.environ[name] == "2" for name in threads.POOL_VARIABLES)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "NUMBA_NUM_THREADS" not in os.environ
    with threads.worker_environment(None):  # the defaults: nothing set
        assert "NUMBA_NUM_THREADS" not in os.environ
    with pytest.raises(ValueError, match="at least 1"):
        threads.worker_env(0)


def test_rounds_keep_the_fastest_run_and_the_summary_is_a_geometric_mean():
    rec = lambda impl, op, shape, lo, med: {"impl": impl, "op": op, "shape": shape, "dims": [1], "min_s": lo,  # noqa: E731
                                            "median_s": med, "runs": 5, "flops": 8e9}
    records = [rec("nbcnn", "conv_fwd", "a", 2.0, 3.0), rec("torch", "conv_fwd", "a", 1.0, 1.0),
               rec("nbcnn", "conv_fwd", "b", 1.0, 1.0), rec("torch", "conv_fwd", "b", 4.0, 4.0),
               rec("nbcnn", "conv_fwd", "a", 1.0, 5.0), rec("torch", "conv_fwd", "a", 2.0, 2.0),
               rec("nbcnn", "conv_fwd", "a", 4.0, 4.0)]
    merged = {(r["impl"], r["shape"]): r for r in benchmark.merge_rounds(records)}
    assert len(merged) == 4
    assert merged["nbcnn", "a"]["min_s"] == 1.0 and merged["nbcnn", "a"]["median_s"] == 4.0
    assert merged["nbcnn", "a"]["runs"] == 15
    assert merged["torch", "a"]["min_s"] == 1.0
    summary = benchmark.torch_summary(benchmark.rows({"records": list(merged.values())}))
    # a: nbcnn 1 s vs torch 1 s -> 1.0; b: 1 s vs 4 s -> 4.0; geometric mean 2.0
    assert summary["conv forward"]["geomean"] == pytest.approx(2.0)
    assert summary["conv forward"]["lowest"] == pytest.approx(1.0) and summary["conv forward"]["lowest_at"] == "a"


# --------------------------------------------------------------------------- nms and YOLOv3-tiny


def test_boxes_are_deterministic_clustered_and_well_formed():
    s = benchmark.BOX_SHAPES["boxes10k"]
    boxes, scores = benchmark.boxes_inputs(s)
    again, _ = benchmark.boxes_inputs(s)
    assert boxes.shape == (10_000, 4) and scores.shape == (10_000,) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, again)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # clusters: most boxes are suppressed, a detector's raw output, not 10,000 separate objects
    kept = benchmark.numpy_nms(boxes, scores)
    assert 100 < len(kept) < 5_000


@pytest.mark.parametrize("name", ["tinyboxes", "boxes10k"])
def test_numpy_nms_peer_keeps_the_same_boxes_as_nbcnn(name):
    boxes, scores = benchmark.boxes_inputs(benchmark.all_named_shapes()[name])
    with nbcnn.use_backend("cpu"):
        want = nbcnn.nms(boxes, scores, benchmark.NMS_IOU)
    np.testing.assert_array_equal(benchmark.numpy_nms(boxes, scores), want)


def test_cli_tiny_json_has_the_nms_row():
    r = bench("--tiny", "--repeat", "1", "--no-compile-time", "--ops", "nms", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert set(data["shapes"]) == {"tinyboxes"}  # only the shapes an asked-for op runs on
    recs = {rec["impl"]: rec for rec in data["records"]}
    assert {"nbcnn", "numpy"} <= set(recs)
    for rec in recs.values():
        assert rec["op"] == "nms" and rec["shape"] == "tinyboxes" and rec["boxes"] == 500
        assert rec["dims"] == list(benchmark.TINY_BOXES["tinyboxes"])
    assert recs["nbcnn"]["kept"] == recs["numpy"]["kept"]
    row = benchmark.rows(data)[0]
    assert row["unit"] == "Mbox/s" and row["vs_numpy"] > 0
    assert "boxes" in data["summary_vs_numpy"]
    if not benchmark.torchvision_available():  # torch's NMS is torchvision's: no torch record, a note
        assert "torch" not in recs and any("torchvision" in n for n in data["notes"])
        assert "boxes" not in data["summary"]


def test_nms_is_a_family_of_its_own_in_the_summary():
    rec = lambda impl, op, shape, s, **work: {"impl": impl, "op": op, "shape": shape, "dims": [1],  # noqa: E731
                                              "min_s": s, "median_s": s, "runs": 1, **work}
    records = [
        rec("nbcnn", "conv_fwd", "a", 1.0, flops=1e9), rec("torch", "conv_fwd", "a", 1.0, flops=1e9),
        rec("nbcnn", "maxpool_fwd", "p", 1.0, bytes=1e9), rec("torch", "maxpool_fwd", "p", 2.0, bytes=1e9),
        rec("nbcnn", "nms", "b", 1.0, boxes=10_000, kept=7), rec("torch", "nms", "b", 8.0, boxes=10_000, kept=7),
        rec("numpy", "nms", "b", 4.0, boxes=10_000, kept=7)]
    table = benchmark.rows({"records": records})
    nms = next(r for r in table if r["op"] == "nms")
    assert nms["nbcnn"] == pytest.approx(0.01) and nms["unit"] == "Mbox/s"  # 10,000 boxes in 1 s
    assert nms["kept"] == {"nbcnn": 7, "torch": 7, "numpy": 7}
    summary = benchmark.torch_summary(table)
    assert summary["boxes"]["geomean"] == pytest.approx(8.0)
    assert summary["conv forward"]["geomean"] == pytest.approx(1.0)  # the nms ratio stays out
    assert summary["pooling"]["geomean"] == pytest.approx(2.0)
    assert benchmark.torch_summary(table, peer="numpy")["boxes"]["geomean"] == pytest.approx(4.0)
    text = benchmark.format_table({"records": records, "backend": "cpu", "repeat": 1, "machine": benchmark.cpu_peak()})
    assert "Mbox/s" in text and "boxes 8.00" in text and "nms boxes kept: b nbcnn 7, torch 7, numpy 7" in text


def _yolo_weights_or_skip():
    from nbcnn.weights import WeightsNotFound, find

    try:
        return find("yolov3-tiny")
    except WeightsNotFound:
        pytest.skip("YOLOv3-tiny weights not in the cache (`nbcnn weights yolov3-tiny`)")


def test_torch_built_yolov3_tiny_agrees_with_nbcnn():
    pytest.importorskip("torch")
    _yolo_weights_or_skip()
    import torch

    from nbcnn.benchmark import yolo
    from nbcnn.benchmark.torch_darknet import TorchDarknet

    net, specs = yolo.nbcnn_network(yolo.FULL_SIZE)
    x = yolo.yolo_image(yolo.FULL_SIZE)
    with nbcnn.use_backend("cpu"):
        want = yolo.heads_chw(net(x))
    model = TorchDarknet(specs, net).eval()
    with torch.no_grad():
        got = [h.numpy()[0] for h in model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())]
    assert [g.shape for g in got] == [(255, 13, 13), (255, 26, 26)] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=yolo.TOLERANCE)


def test_yolo_row_names_the_command_when_the_weights_are_missing(tmp_path, monkeypatch):
    from nbcnn.benchmark import models

    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path))  # an empty cache
    workers, notes = models.yolo_plan(96, "cpu", peers=True)
    assert workers == [] and any("nbcnn weights yolov3-tiny" in n for n in notes)
    assert "nbcnn weights yolov3-tiny" in "\n".join(models.format_yolo(
        {"results": {}, "yolo": models.yolo_summary({}, 0, notes)}))


def test_cli_models_tiny_json_has_the_yolo_row():
    r = bench("--models", "--tiny", "--repeat", "1", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    from nbcnn.benchmark import models, yolo

    assert data["results"]["nbcnn"]["lenet_train"]["images_per_s"] > 0  # the rest runs whatever YOLO does
    faces = data["results"]["faces"]  # triplet training, nbcnn (and torch when installed)
    assert faces["nbcnn"]["images_per_second"] > 0 and faces["batch"] > 0
    assert ("images_per_second" in faces.get("torch", {})) == benchmark.torch_available()
    y = data["yolo"]
    try:
        yolo.weights_files()
    except FileNotFoundError:
        assert y["input"] is None and any("nbcnn weights yolov3-tiny" in n for n in y["notes"])
        return
    assert y["input"] == [yolo.TINY_SIZE, yolo.TINY_SIZE, 3]
    nb = data["results"]["nbcnn"][models.YOLO_KEY]
    assert nb["best_s"] > 0 and nb["input"] == y["input"] and "Conv2D" in nb["seconds_by_layer_kind"]
    style = data["results"]["nbcnn"][models.STYLE_KEY]  # the style step rides on the same backbone
    assert style["size"] == models.style_size(yolo.TINY_SIZE) and style["min_ms"] > 0
    if benchmark.torch_available():
        torch_style = data["results"]["torch"][models.STYLE_KEY]
        assert torch_style["size"] == style["size"] and torch_style["min_ms"] > 0
        t = data["results"]["torch"][models.YOLO_KEY]
        assert t["compared_with"] == "nbcnn" and t["heads_compared"] == 2
        assert t["agrees"] and t["max_abs_diff"] <= yolo.TOLERANCE and t["best_s"] > 0
        assert y["vs_torch"] == pytest.approx(t["best_s"] / nb["best_s"])
    if yolo.darknet_library():
        d = data["results"]["darknet"][models.YOLO_KEY]
        assert d["agrees"] and d["heads_compared"] == 1 and d["best_s"] > 0 and "vs_darknet" in y
    else:
        assert "darknet" not in data["results"] and any("libdarknet" in n for n in y["notes"])
