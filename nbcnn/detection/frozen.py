"""A pretrained feature extractor inside a trainable model, kept as it is (transfer learning).

The course's recipe for a small data set: keep the pretrained layers (they learned edges,
blobs and parts on a big one), freeze them, and train only a new head on top. Frozen, they
need no gradients of their weights and no optimiser state; as the network's first layer in
training they need no backward at all, so training costs about one forward of them.

Registered with the layer classes, so a checkpoint holding one loads with
``nbcnn.load_model`` / ``load_detector`` (this module is imported by ``detector.py``).
"""

from __future__ import annotations

from .. import layers as L


class FrozenFeatures(L.Layer):
    """A pretrained feature extractor used as it is: forward in inference mode, and no
    gradients for its own weights. Its backward passes the gradient to the input only when
    someone needs it (``need_input_grad``); as a network's first layer in training it does no
    work at all, which is what makes training the new head cheap."""

    def __init__(self, layers=(), name: str | None = "frozen_features"):
        super().__init__(name)
        self.chain = L.Chain(list(layers))
        self.trainable = False

    def get_config(self) -> dict:
        return {"class": "FrozenFeatures", "config": {"layers": [l.get_config() for l in self.chain.layers],
                                                      "name": self.name}}

    def sublayers(self):
        return [self.chain]

    def build(self, input_shape, rng):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.chain.build(self.input_shape, rng)
        return self.output_shape

    def forward(self, x, training=False):
        return self.chain.forward(x, training=False)  # frozen: BatchNorm keeps its pretrained statistics

    def backward(self, dy):
        if not self.need_input_grad:
            return None
        return self.chain.backward(dy)


L.LAYER_CLASSES["FrozenFeatures"] = FrozenFeatures
