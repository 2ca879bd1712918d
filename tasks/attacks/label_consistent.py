"""Label-consistent poisoning (Turner, Tsipras, Madry 2019): hard target-class images, then a trigger.

A. Turner, D. Tsipras, A. Madry, "Label-Consistent Backdoor Attacks", arXiv:1912.02771, 2019.
Target-class training images are first made hard to classify by an untargeted PGD attack on a
*proxy* model trained on the clean data (L-inf radius ``eps`` 16 on the 0-255 scale, ``steps`` 10,
step size 2.5 eps / steps as in Madry et al.), so that the model leans on the trigger to label
them; then a 3x3 checkerboard is added in all four corners at ``amplitude`` (255: opaque black and
white). Labels are kept. Test inputs carry the trigger at ``test_amplitude``, without PGD.

The proxy model is its own stage (``proxy_model``), keyed by the dataset, the trial's train
config with ``proxy_seed`` for its seed (1 by default, so the proxy is not the victim's twin), and
shared by every trial that needs it.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.attacks.patterns import map_chunks
from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.methods import Attack
from tasks.stage import Stage
from tasks.train import TrainConfig, TrainedModel, train_from_scratch

_PGD_BATCH = 256


class LabelConsistentParams(StageConfig):
    eps: float = Field(16, ge=0, le=255, description="PGD's L-inf radius on the 0-255 scale")
    steps: int = Field(10, ge=0, description="PGD steps (0: no adversarial perturbation)")
    amplitude: float = Field(255, ge=0, le=255, description="how far (0-255) the corner trigger moves a pixel on poisons")
    test_amplitude: float = Field(255, ge=0, le=255, description="the same on test inputs")
    proxy_seed: int = Field(1, ge=0, description="seed of the proxy model trained on the clean data")


def train_proxy_model(config: TrainConfig, dataset: ImageDataset) -> TrainedModel:
    """Stage ``proxy_model``: the train config's model trained on the clean training set."""
    model = train_from_scratch(config, np.asarray(dataset.x_train), np.asarray(dataset.y_train), dataset.n_classes)
    return TrainedModel(model=model, keep=np.arange(len(dataset.y_train), dtype=np.int64), metrics={"n_train": len(dataset.y_train)})


PROXY_MODEL = Stage("proxy_model", 1, train_proxy_model, TrainedModel)

_CHECKER = np.array([[1, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=np.float32)


def corner_trigger(height: int, width: int) -> np.ndarray:
    """The four-corner trigger's signs, float32 (h, w, 1): +1 white, -1 black, 0 untouched.

    A 3x3 checkerboard one pixel in from each corner, mirrored into each corner as in Turner et al.'s figures.
    """
    signs = np.zeros((height, width, 1), dtype=np.float32)
    for flip_rows in (False, True):
        for flip_cols in (False, True):
            patch = _CHECKER[::-1] if flip_rows else _CHECKER
            patch = patch[:, ::-1] if flip_cols else patch
            top = height - 4 if flip_rows else 1
            left = width - 4 if flip_cols else 1
            signs[top:top + 3, left:left + 3, 0] = patch
    return signs


def pgd(model, x: np.ndarray, y: np.ndarray, eps: float, steps: int) -> np.ndarray:
    """Untargeted L-inf PGD on the 0-255 scale: images ``x`` uint8 (n, h, w, c) moved within ``eps``
    to raise ``model``'s loss on labels ``y`` (n,). Returns float32 (n, h, w, c) in [0, 255]."""
    import tensorflow as tf

    if steps == 0 or eps == 0 or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    step_size = 2.5 * eps / steps
    loss_of = tf.keras.losses.SparseCategoricalCrossentropy()
    out = []
    for start in range(0, len(x), _PGD_BATCH):  # batches, not images
        original = tf.constant(np.asarray(x[start:start + _PGD_BATCH], dtype=np.float32))
        labels = tf.constant(y[start:start + _PGD_BATCH])
        adversarial = original
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(adversarial)
                loss = loss_of(labels, model(adversarial, training=False))
            adversarial = adversarial + step_size * tf.sign(tape.gradient(loss, adversarial))
            adversarial = tf.clip_by_value(tf.clip_by_value(adversarial, original - eps, original + eps), 0, 255)
        out.append(adversarial.numpy())
    return np.concatenate(out)


class LabelConsistent(Attack):
    """Label-consistent (Turner et al. 2019), clean-label: PGD-hardened target-class images with a four-corner trigger."""

    name = "label_consistent"
    Params = LabelConsistentParams
    labels = "clean"
    stages = (PROXY_MODEL,)

    def parents(self, params: LabelConsistentParams, graph) -> tuple:
        proxy_config = graph.train_config.model_copy(update={"seed": params.proxy_seed})
        ref, _ = graph.run("proxy_model", PROXY_MODEL, proxy_config, graph.dataset)
        return (ref,)

    def stamp(self, params: LabelConsistentParams, x, *, mode, rng, seed=0, y=None, parents=()):
        x = np.asarray(x)
        trigger = corner_trigger(*x.shape[1:3])
        if mode == "test":
            base, amplitude = x, params.test_amplitude
        else:
            (proxy,) = parents
            base, amplitude = pgd(proxy.model, x, y, params.eps, params.steps), params.amplitude
        stamp = lambda images: np.clip(np.round(images + amplitude * trigger), 0, 255).astype(np.uint8)  # noqa: E731
        return map_chunks(stamp, np.asarray(base)).astype(np.uint8), {}
