"""Record darknet's own numbers for YOLOv3-tiny, for tests/test_detect.py to compare nbcnn against.

The tests never need darknet: they read what this script wrote, ``tests/data/darknet_yolov3_tiny.json``.
To record again (on a Debian/Ubuntu machine, as root):

    apt-get install -y darknet gcc                   # the darknet program, libdarknet.so, darknet.h
    nbcnn weights yolov3-tiny                        # the official weights, into the cache
    python tests/record_darknet.py --make-test-photos    # once: the reduced test photos
    python tests/record_darknet.py                   # writes tests/data/darknet_yolov3_tiny.json

How: ``libdarknet.so`` is called through ctypes, doing what ``darknet detect`` does
(examples/detector.c: test_detector): ``load_image_color`` (OpenCV's decoder),
``letterbox_image`` to 416 x 416, ``network_predict``, ``get_network_boxes`` (thresh .25,
hier .5, relative boxes) and ``do_nms_sort`` (.45); every (box, class) with a probability
above .25 is a detection, as ``draw_detections`` prints them. The raw outputs of the two
yolo layers (``l.output``: the logistic already applied to x, y, objectness and classes) are
read at fixed places; the offsets of ``output`` in darknet's ``layer`` struct are taken from
the package's own ``darknet.h``, compiled with gcc. Also recorded: pixels of darknet's
letterboxed image, whether Pillow decodes each photo to the same bytes as darknet's OpenCV,
the raw heads for a synthetic input fed to the network directly (no letterbox), and the
darknet program's printed lines for each photo (``darknet detect ... -thresh 0.25``).
"""

from __future__ import annotations

import argparse
import ctypes as C
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ASSETS = ROOT / "nbcnn" / "assets"
DARKNET_DATA = Path("/usr/share/darknet/data")
LIB = Path("/usr/lib/darknet/libdarknet.so")
HEADER = Path("/usr/lib/darknet/include/darknet.h")
OUT = DATA / "darknet_yolov3_tiny.json"

# the photos: two shipped in nbcnn/assets (darknet's originals), three reduced copies in tests/data
PHOTOS = {
    "dog.jpg": ASSETS / "dog.jpg",
    "person.jpg": ASSETS / "person.jpg",
    "horses.jpg": DATA / "horses.jpg",
    "eagle.jpg": DATA / "eagle.jpg",
    "giraffe.jpg": DATA / "giraffe.jpg",
}
# the test copies: horses and eagle 448 px wide (letterbox shrinks them), giraffe 320 (it grows)
REDUCED_WIDTH = {"horses.jpg": 448, "eagle.jpg": 448, "giraffe.jpg": 320}
REDUCED_QUALITY = 85

THRESH, HIER, NMS = 0.25, 0.5, 0.45
YOLO = 23  # LAYER_TYPE enum value of YOLO in darknet.h


def synthetic_input(h: int = 416, w: int = 416, c: int = 3) -> np.ndarray:
    """The deterministic pattern fed straight to the network (NHWC, float32, in [0, 1]).
    tests/test_detect.py builds the same array with the same formula."""
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = 0.5 + 0.5 * np.sin(0.031 * x * (ch + 1) + 0.017 * y + 0.5 * ch) * np.cos(0.011 * (x - y))
    return v.astype(np.float32)[None]


class IMAGE(C.Structure):
    _fields_ = [("w", C.c_int), ("h", C.c_int), ("c", C.c_int), ("data", C.POINTER(C.c_float))]


class BOX(C.Structure):
    _fields_ = [("x", C.c_float), ("y", C.c_float), ("w", C.c_float), ("h", C.c_float)]


class DETECTION(C.Structure):
    _fields_ = [("bbox", BOX), ("classes", C.c_int), ("prob", C.POINTER(C.c_float)),
                ("mask", C.POINTER(C.c_float)), ("objectness", C.c_float), ("sort_class", C.c_int)]


def struct_offsets() -> dict:
    """sizeof(layer) and the offsets the script reads, from the installed darknet.h."""
    src = r"""
#include <stddef.h>
#include "darknet.h"
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(layer), offsetof(layer, type),
           offsetof(layer, output), offsetof(layer, outputs), offsetof(layer, out_h), offsetof(layer, out_w),
           offsetof(layer, out_c), offsetof(network, n), offsetof(network, layers), sizeof(detection));
    return 0;
}
"""
    with tempfile.TemporaryDirectory() as tmp:
        c_file, exe = Path(tmp) / "offsets.c", Path(tmp) / "offsets"
        c_file.write_text(src)
        subprocess.run(["gcc", f"-I{HEADER.parent}", str(c_file), "-o", str(exe)], check=True)
        values = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    keys = ["layer_size", "type", "output", "outputs", "out_h", "out_w", "out_c", "net_n", "net_layers", "det_size"]
    offsets = dict(zip(keys, values))
    assert offsets["det_size"] == C.sizeof(DETECTION), "struct detection differs from this script's"
    return offsets


class Darknet:
    def __init__(self, cfg: Path, weights: Path):
        self.lib = lib = C.CDLL(str(LIB))
        lib.load_network.argtypes = [C.c_char_p, C.c_char_p, C.c_int]
        lib.load_network.restype = C.c_void_p
        lib.set_batch_network.argtypes = [C.c_void_p, C.c_int]
        lib.load_image_color.argtypes = [C.c_char_p, C.c_int, C.c_int]
        lib.load_image_color.restype = IMAGE
        lib.letterbox_image.argtypes = [IMAGE, C.c_int, C.c_int]
        lib.letterbox_image.restype = IMAGE
        lib.network_predict.argtypes = [C.c_void_p, C.POINTER(C.c_float)]
        lib.network_predict.restype = C.POINTER(C.c_float)
        lib.get_network_boxes.argtypes = [C.c_void_p, C.c_int, C.c_int, C.c_float, C.c_float,
                                          C.POINTER(C.c_int), C.c_int, C.POINTER(C.c_int)]
        lib.get_network_boxes.restype = C.POINTER(DETECTION)
        lib.do_nms_sort.argtypes = [C.POINTER(DETECTION), C.c_int, C.c_int, C.c_float]
        lib.free_detections.argtypes = [C.POINTER(DETECTION), C.c_int]
        lib.free_image.argtypes = [IMAGE]
        self.off = struct_offsets()
        self.net = lib.load_network(str(cfg).encode(), str(weights).encode(), 0)
        lib.set_batch_network(self.net, 1)
        self.n = C.c_int.from_address(self.net + self.off["net_n"]).value
        self.layers_base = C.c_void_p.from_address(self.net + self.off["net_layers"]).value

    def _layer_int(self, i, key):
        return C.c_int.from_address(self.layers_base + i * self.off["layer_size"] + self.off[key]).value

    def yolo_outputs(self) -> dict:
        """{layer index: its l.output as (C, H, W) float32}, for every yolo layer."""
        found = {}
        for i in range(self.n):
            if self._layer_int(i, "type") != YOLO:
                continue
            addr = self.layers_base + i * self.off["layer_size"] + self.off["output"]
            ptr = C.cast(C.c_void_p.from_address(addr).value, C.POINTER(C.c_float))
            shape = (self._layer_int(i, "out_c"), self._layer_int(i, "out_h"), self._layer_int(i, "out_w"))
            assert self._layer_int(i, "outputs") == np.prod(shape)
            found[i] = np.ctypeslib.as_array(ptr, shape).copy()
        return found

    def predict(self, chw: np.ndarray):
        x = np.ascontiguousarray(chw, np.float32)
        self.lib.network_predict(self.net, x.ctypes.data_as(C.POINTER(C.c_float)))
        return self.yolo_outputs()

    def detect(self, photo: Path):
        im = self.lib.load_image_color(str(photo).encode(), 0, 0)
        decoded = np.ctypeslib.as_array(im.data, (im.c, im.h, im.w)).copy()
        sized = self.lib.letterbox_image(im, 416, 416)
        boxed = np.ctypeslib.as_array(sized.data, (3, 416, 416)).copy()
        heads = self.predict(boxed)
        num = C.c_int(0)
        dets = self.lib.get_network_boxes(self.net, im.w, im.h, THRESH, HIER, None, 1, C.byref(num))
        self.lib.do_nms_sort(dets, num.value, 80, NMS)
        found = []
        for i in range(num.value):
            d = dets[i]
            for j in range(d.classes):
                if d.prob[j] > THRESH:
                    found.append({"class": j, "prob": _g(d.prob[j]), "objectness": _g(d.objectness),
                                  "box_rel": [_g(d.bbox.x), _g(d.bbox.y), _g(d.bbox.w), _g(d.bbox.h)]})
        self.lib.free_detections(dets, num.value)
        self.lib.free_image(sized)
        self.lib.free_image(im)
        return decoded, boxed, heads, (im.w, im.h), found


def head_samples(heads: dict, rng) -> list:
    """For each yolo layer: 32 random (channel, row, col) values, and for the anchor with the
    highest objectness its x, y, w, h, objectness and its 5 best class scores."""
    out = []
    for index, h in heads.items():
        C_, H, W = h.shape
        picks = {(int(rng.integers(C_)), int(rng.integers(H)), int(rng.integers(W))) for _ in range(32)}
        obj = h[4::85]                                   # (anchors, H, W) objectness
        a, r, c = np.unravel_index(int(np.argmax(obj)), obj.shape)
        best = np.argsort(-h[a * 85 + 5:a * 85 + 85, r, c])[:5]
        picks |= {(int(a * 85 + e), int(r), int(c)) for e in [0, 1, 2, 3, 4, *(5 + best)]}
        out.append({"layer": int(index), "shape_chw": [C_, H, W],
                    "samples": [[ch, row, col, _g(h[ch, row, col])] for ch, row, col in sorted(picks)],
                    "max_objectness": {"anchor": int(a), "row": int(r), "col": int(c), "value": _g(obj[a, r, c])}})
    return out


def letterbox_samples(boxed: np.ndarray, size, rng) -> dict:
    w, h = size
    if 416.0 / w < 416.0 / h:  # only to choose the sample places; nbcnn computes this itself
        new_w, new_h = 416, h * 416 // w
    else:
        new_w, new_h = w * 416 // h, 416
    top, left = (416 - new_h) // 2, (416 - new_w) // 2
    rows = {top, top + 1, top + new_h - 2, top + new_h - 1, max(top - 1, 0), min(top + new_h, 415), 208}
    cols = {left, left + 1, left + new_w - 2, left + new_w - 1, max(left - 1, 0), min(left + new_w, 415), 208}
    picks = {(r, c, (r + c) % 3) for r in rows for c in cols}
    picks |= {(int(rng.integers(416)), int(rng.integers(416)), int(rng.integers(3))) for _ in range(32)}
    return {"new_wh": [new_w, new_h], "offset_xy": [left, top],
            "sum": float(boxed.astype(np.float64).sum()), "sum_sq": float((boxed.astype(np.float64) ** 2).sum()),
            "samples": [[r, c, ch, float(boxed[ch, r, c])] for r, c, ch in sorted(picks)]}


def pillow_matches(photo: Path, decoded: np.ndarray) -> bool:
    from PIL import Image

    rgb = np.asarray(Image.open(photo).convert("RGB")).transpose(2, 0, 1)
    return bool(np.array_equal((np.arange(256) / 255.0).astype(np.float32)[rgb], decoded))


def darknet_cli(cfg: Path, weights: Path, photo: Path) -> list[str]:
    """What `darknet detect` prints for the photo (it then opens a window: offscreen, and a timeout)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with tempfile.TemporaryDirectory() as tmp:
        # darknet reads cfg/coco.data and data/labels/ relative to where it runs, and writes
        # predictions.jpg there: run it in a scratch folder that links to the package's files
        for sub in ("cfg", "data"):
            os.symlink(f"/usr/share/darknet/{sub}", Path(tmp) / sub)
        try:
            done = subprocess.run(["timeout", "30", "stdbuf", "-oL", "darknet", "detect", str(cfg), str(weights),
                                   str(photo.resolve()), "-thresh", str(THRESH)], capture_output=True, text=True,
                                  cwd=tmp, env=dict(env, HOME=tmp))
        except FileNotFoundError:
            return []
    return [line for line in done.stdout.splitlines() if ": " in line and line.rstrip().endswith("%")]


def _g(v) -> float:
    """A float32 value with 8 significant digits (enough to tell float32 numbers apart)."""
    return float(f"{float(v):.8g}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_test_photos() -> None:
    from PIL import Image

    for name, width in REDUCED_WIDTH.items():
        with Image.open(DARKNET_DATA / name) as im:
            im = im.convert("RGB")
            small = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
            small.save(DATA / name, quality=REDUCED_QUALITY)
            print(f"{DATA / name}: {small.size[0]} x {small.size[1]}, {(DATA / name).stat().st_size} bytes")


def _dump(record) -> str:
    """JSON with each flat list of numbers on one line: small, and readable in a diff."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[[^\[\]{}\"]*\]", lambda m: " ".join(m.group(0).split()).replace("[ ", "[").replace(" ]", "]"),
                  text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", type=Path, default=None, help="default: the cached yolov3-tiny.cfg")
    parser.add_argument("--weights", type=Path, default=None, help="default: the cached yolov3-tiny.weights")
    parser.add_argument("--make-test-photos", action="store_true",
                        help=f"write the reduced horses/eagle/giraffe copies into {DATA} first")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    if args.make_test_photos:
        make_test_photos()
    sys.path.insert(0, str(ROOT))
    from nbcnn.weights import find

    cached = find("yolov3-tiny") if args.cfg is None or args.weights is None else {}
    cfg, weights = args.cfg or cached["cfg"], args.weights or cached["weights"]
    names = (DARKNET_DATA / "coco.names").read_text().split("\n")
    dn = Darknet(cfg, weights)
    rng = np.random.default_rng(2018)
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "darknet"], capture_output=True, text=True).stdout
    record = {
        "about": "darknet's own YOLOv3-tiny results, recorded by tests/record_darknet.py through libdarknet.so",
        "darknet": {"package": f"darknet {version} (Debian)", "cfg_sha256": sha256(cfg),
                    "weights_sha256": sha256(weights)},
        "thresh": THRESH, "hier_thresh": HIER, "nms": NMS,
        "photos": {},
    }
    for name, photo in PHOTOS.items():
        decoded, boxed, heads, size, found = dn.detect(photo)
        for d in found:
            d["name"] = names[d["class"]]
        record["photos"][name] = {
            "path": str(photo.relative_to(ROOT)), "sha256": sha256(photo), "size_wh": list(size),
            "pillow_decodes_the_same_bytes": pillow_matches(photo, decoded),
            "letterbox": letterbox_samples(boxed, size, rng),
            "heads": head_samples(heads, rng),
            "detections": found,
            "darknet_cli_prints": darknet_cli(cfg, weights, photo),
        }
        print(name, size, [(d["name"], round(d["prob"], 3)) for d in found])
    heads = dn.predict(synthetic_input()[0].transpose(2, 0, 1))
    record["synthetic"] = {"formula": "0.5 + 0.5*sin(0.031*x*(c+1) + 0.017*y + 0.5*c)*cos(0.011*(x-y)), float64 "
                                      "-> float32, fed as the 416x416x3 network input",
                           "heads": head_samples(heads, rng)}
    OUT.write_text(_dump(record) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
