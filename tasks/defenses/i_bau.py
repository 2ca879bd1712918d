"""``i_bau``: Implicit Backdoor Adversarial Unlearning, a model repair on the clean tuning set.

Y. Zeng, S. Chen, W. Park, Z. M. Mao, M. Jin, R. Jia, "Adversarial Unlearning of Backdoors via
Implicit Hypergradient", ICLR 2022 (the authors' code: github.com/YiZeng623/I-BAU, ``defense.py``
and ``hypergrad.py``). A minimax problem: the inner player finds one universal perturbation
``delta`` that the model misclassifies most, the outer player updates the weights ``theta`` so
that perturbed inputs keep their labels, with the inner solution's dependence on ``theta``
accounted for by the implicit hypergradient.

Each of ``rounds`` rounds, as the authors' code:

1. **Perturbation.** ``delta`` (one image, zeros at first) takes one SGD step (``perturbation_lr``
   10) per tuning batch on ``-CE(f(x + delta), f's own labels) + l2_penalty |delta|^2``.
2. **Unlearning.** For each tuning batch, an Adam step (``learning_rate``) on the hypergradient of
   the outer loss ``CE(f(x + patched delta), y)``, where a random ``outer_portion`` share of the
   batch (at least one image) carries ``delta``. The inner problem's fixed-point map is one
   gradient step ``Phi(delta, theta) = delta - inner_lr * grad_delta L_in(delta, theta)`` with
   ``L_in = -CE(f(x0 + delta), y0) + l2_penalty |delta|^2`` on the first tuning batch
   ``(x0, y0)``; the hypergradient is ``dL_out/dtheta + (dPhi/dtheta)^T v`` with ``v`` from ``k``
   fixed-point iterations ``v <- (dPhi/ddelta)^T v + dL_out/ddelta`` (from ``v = 0``, so the
   first is ``dL_out/ddelta``).

The model runs in inference mode throughout (the authors' ``model.eval()``). Units: the authors'
images are in [0, 1]; ours are on the model's 0-255 scale, so ``delta`` is kept in the [0, 1]
image range and the model sees ``x + 255 delta``. The penalty 0.001 and the step sizes then mean
what they mean in the paper; applied to 0-255 values, the same penalty would be 65,025 times
stronger and pin ``delta`` near zero. The authors' final code does not project ``delta`` onto
an L2 ball (the line is commented out); neither does this. Their outer learning rate default is
1e-3; issue 19 sets 1e-4 (BackdoorBench's). Batches run in order, unshuffled, as theirs.
"""

from __future__ import annotations


import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.methods import CleanData, Context, Metric, ModelRepair
from tasks.train import copy_model


class Params(StageConfig):
    """Parameters of ``i_bau`` (the authors' defaults, but ``learning_rate``: see the module docstring)."""

    rounds: int = Field(5, ge=1, le=1000, description="rounds of perturbation search and unlearning")
    k: int = Field(5, ge=1, le=1000, description="fixed-point iterations of the hypergradient")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="Adam's learning rate on the weights")
    batch_size: int = Field(100, ge=1, le=65536, description="tuning images per batch (the authors' 100)")
    l2_penalty: float = Field(0.001, ge=0, description="weight of |delta|^2, delta in the [0, 1] image range")
    perturbation_lr: float = Field(10.0, gt=0, description="SGD step of the perturbation search")
    inner_lr: float = Field(0.1, gt=0, description="step of the inner fixed-point map (gradient descent)")
    outer_portion: float = Field(0.01, gt=0, le=1, description="share of each batch carrying delta in the outer loss")


def _crossentropy(model, x, y):
    """Mean cross-entropy of ``model`` (softmax output) on float images ``x`` and int labels ``y``;
    Keras takes the softmax's logits inside a compiled function, so it does not saturate."""
    import keras
    import tensorflow as tf

    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False)))


def inner_loss(model, delta, x, y, l2_penalty: float):
    """``L_in = -CE(f(x + 255 delta), y) + l2_penalty |delta|^2``; ``x`` float 0-255 (n, h, w, c),
    ``delta`` (1, h, w, c) in the [0, 1] range."""
    import tensorflow as tf

    return -_crossentropy(model, x + 255.0 * delta, y) + l2_penalty * tf.reduce_sum(tf.square(delta))


def hypergradient(model, delta, inner_x, inner_y, outer_x, outer_y, patched, k: int, inner_lr: float,
                  l2_penalty: float):
    """The implicit hypergradient of the outer loss with respect to ``model.trainable_variables``,
    and the outer loss.

    ``delta`` (1, h, w, c) in the [0, 1] range; ``inner_x``/``outer_x`` float 0-255 (n, h, w, c)
    with int labels; ``patched`` float (n_outer, 1, 1, 1), 1 where an outer image carries
    ``delta``. ``k`` fixed-point iterations (``k = 1``: no implicit term beyond ``dL_out/ddelta``'s
    first pass). Returns ``(list of gradients, outer loss)``.
    """
    import tensorflow as tf

    weights = model.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(delta)
        outer = _crossentropy(model, outer_x + 255.0 * delta * patched, outer_y)
    outer_delta, *outer_weights = tape.gradient(outer, [delta, *weights])
    with tf.GradientTape(persistent=True) as second:
        second.watch(delta)
        with tf.GradientTape() as first:
            first.watch(delta)
            loss = inner_loss(model, delta, inner_x, inner_y, l2_penalty)
        mapped = delta - inner_lr * first.gradient(loss, delta)  # Phi(delta, theta)
    # v_1 = dL_out/ddelta (the authors' first iteration, from v = 0); v <- J^T v + dL_out/ddelta.
    v = outer_delta
    for _ in range(k - 1):
        v = second.gradient(mapped, delta, output_gradients=v) + outer_delta
    implicit = second.gradient(mapped, weights, output_gradients=v)
    del second
    return [o + (i if i is not None else 0.0) for o, i in zip(outer_weights, implicit)], outer


def unlearn(model, x: np.ndarray, y: np.ndarray, params: Params, seed: int) -> tuple[object, dict]:
    """I-BAU on a copy of ``model`` with clean images ``x`` (uint8 (n, h, w, c)) and labels ``y``
    (n,): the module docstring's rounds. Returns the repaired copy and its metrics."""
    import keras
    import tensorflow as tf

    if not len(y):
        raise ValueError("i_bau needs clean tuning images; the tuning set is empty")
    repaired = copy_model(model)
    weights = repaired.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
    optimizer.build(weights)
    rng = np.random.default_rng(seed)
    starts = range(0, len(y), params.batch_size)
    batches = [(tf.constant(x[s:s + params.batch_size], tf.float32), tf.constant(y[s:s + params.batch_size], tf.int32))
               for s in starts]
    inner_x, inner_y = batches[0]
    delta = tf.Variable(tf.zeros((1, *x.shape[1:]), tf.float32))

    @tf.function(reduce_retracing=True)
    def perturbation_step(images):
        own = tf.argmax(repaired(images, training=False), axis=1, output_type=tf.int32)
        with tf.GradientTape() as tape:
            loss = inner_loss(repaired, delta, images, own, params.l2_penalty)
        delta.assign_sub(params.perturbation_lr * tape.gradient(loss, delta))

    @tf.function(reduce_retracing=True)
    def unlearning_step(images, labels, patched):
        gradients, outer = hypergradient(repaired, tf.identity(delta), inner_x, inner_y, images, labels, patched,
                                         params.k, params.inner_lr, params.l2_penalty)
        optimizer.apply_gradients(zip(gradients, weights))
        return outer

    norms, outer_losses = [], []
    for _ in range(params.rounds):
        delta.assign(tf.zeros_like(delta))
        for images, _labels in batches:
            perturbation_step(images)
        norms.append(float(tf.norm(delta)))
        for images, labels in batches:
            n = int(images.shape[0])
            patched = np.zeros((n, 1, 1, 1), np.float32)
            patched[rng.choice(n, max(1, int(n * params.outer_portion)), replace=False)] = 1.0
            outer_losses.append(float(unlearning_step(images, labels, tf.constant(patched))))
    return repaired, {"perturbation_norm": norms, "outer_loss_last": outer_losses[-1],
                      "unlearning_steps": len(outer_losses), "n_tune": len(y)}


class IBau(ModelRepair):
    """I-BAU (Zeng et al. 2022): unlearn the universal adversarial perturbation with an implicit hypergradient."""

    name = "i_bau"
    Params = Params
    metrics = (
        Metric("perturbation_norm", list[float], "L2 norm of each round's universal perturbation ([0, 1] image range)"),
        Metric("outer_loss_last", float, "the last unlearning step's outer loss (cross-entropy)"),
        Metric("unlearning_steps", int, "weight updates made (rounds x tuning batches)"),
        Metric("n_tune", int, "clean tuning samples it unlearned on"),
    )

    def repair(self, params: Params, model, data: CleanData, context: Context):
        return unlearn(model, np.asarray(data.x_tune), np.asarray(data.y_tune), params, context.seed)
