"""Best-of-N wall-clock forwards of VGG-16 (224 x 224) and YOLOv3-tiny (416 x 416, needs
``nbcnn weights yolov3-tiny``) on N numba threads, to compare two checkouts in turn::

    for i in 1 2 3; do
        PYTHONPATH=old python bench/whole_forwards.py 1
        PYTHONPATH=new python bench/whole_forwards.py 1
    done

(no torch here: ``nbcnn bench --models`` has the peers; this is the quick A/B of nbcnn alone).
"""

import sys
import time

import numba
import numpy as np


def best(run, repeats: int) -> float:
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def main(threads: int) -> None:
    numba.set_num_threads(threads)
    from nbcnn import models
    from nbcnn.benchmark import yolo

    vgg = models.vgg16()
    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    vgg(image), vgg(image)  # compile, warm the caches
    yolo_net, _ = yolo.nbcnn_network(416)
    photo = yolo.yolo_image(416)
    yolo_net(photo), yolo_net(photo)
    print(f"vgg16 {best(lambda: vgg(image), 5):.3f} s   yolov3-tiny {1e3 * best(lambda: yolo_net(photo), 10):.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else numba.get_num_threads())
