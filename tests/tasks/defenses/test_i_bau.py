"""I-BAU: its implicit hypergradient agrees with a finite-difference estimate of the outer loss at
the inner problem's solution on a tiny float64 model (and the plain partial gradient does not, so
the check can fail), and on a small network trained with a corner backdoor it unlearns the trigger
and keeps clean accuracy."""

from __future__ import annotations

import numpy as np

from tasks.defenses.i_bau import IBau, Params, hypergradient, inner_loss, unlearn
from tasks.methods import CleanData, Context
from tasks.train import TrainConfig, fit_model
from tests.tasks.defenses.test_neural_cleanse import PALETTE
from tests.tasks.defenses.test_strip import CLASSES, SIZE, TARGET

PENALTY, INNER_LR = 1.0, 0.1  # strongly convex inner problem: Phi contracts by about 1 - 2 * 0.1


def tiny_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3, 3, 1), dtype="float64")
    outputs = keras.layers.Dense(3, activation="softmax", dtype="float64")(keras.layers.Flatten(dtype="float64")(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 2e-3, (9, 3)), rng.normal(0, 0.5, 3)])  # logits move ~0.5 per unit of delta
    return model


def solve_inner(model, x, y):
    """delta*(theta): the inner map iterated to its fixed point."""
    import tensorflow as tf

    delta = tf.zeros((1, 3, 3, 1), tf.float64)
    for _ in range(3000):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = inner_loss(model, delta, x, y, PENALTY)
        step = INNER_LR * tape.gradient(loss, delta)
        delta = delta - step
        if float(tf.reduce_max(tf.abs(step))) < 1e-15:
            break
    return delta


def outer_at_solution(model, x_in, y_in, x_out, y_out):
    import keras
    import tensorflow as tf

    delta = solve_inner(model, x_in, y_in)
    probabilities = model(x_out + 255.0 * delta, training=False)
    return float(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y_out, probabilities)))


def test_the_hypergradient_agrees_with_finite_differences_at_the_inner_solution():
    import keras
    import tensorflow as tf

    model = tiny_model(0)
    rng = np.random.default_rng(1)
    x_in, x_out = (tf.constant(rng.uniform(0, 255, (8, 3, 3, 1))) for _ in range(2))
    y_in, y_out = (tf.constant(rng.integers(0, 3, 8), tf.int32) for _ in range(2))
    delta = solve_inner(model, x_in, y_in)
    assert float(tf.norm(delta)) > 1e-3  # the inner solution is not trivially zero
    patched = tf.ones((8, 1, 1, 1), tf.float64)
    gradients, _ = hypergradient(model, delta, x_in, y_in, x_out, y_out, patched, k=300, inner_lr=INNER_LR,
                                 l2_penalty=PENALTY)
    direction = [rng.normal(0, 1, w.shape) for w in model.get_weights()]
    analytic = sum(float(np.sum(g.numpy() * d)) for g, d in zip(gradients, direction))

    weights, eps = model.get_weights(), 1e-6  # central differences: O(eps^2) error, 1e-4 is too coarse here
    values = []
    for sign in (1, -1):
        model.set_weights([w + sign * eps * d for w, d in zip(weights, direction)])
        values.append(outer_at_solution(model, x_in, y_in, x_out, y_out))
    model.set_weights(weights)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-5 * abs(numeric), (analytic, numeric)

    # The partial gradient alone (no implicit term) misses by far more: the test can fail.
    with tf.GradientTape() as tape:
        outer = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y_out, model(x_out + 255.0 * delta * patched, training=False)))
    partial = sum(float(np.sum(g.numpy() * d)) for g, d in zip(tape.gradient(outer, model.trainable_variables),
                                                               direction))
    assert abs(partial - numeric) > 100 * abs(analytic - numeric)


def corner_backdoor_data(per_class: int, seed: int, poison: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy flat-coloured images of the palette's classes; ``poison`` x all images, drawn from other
    classes, carry a white 2x2 corner and the label TARGET."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(CLASSES), per_class)
    x = np.clip(255 * PALETTE[y][:, None, None, :] + rng.normal(0, 30, (len(y), SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    chosen = rng.permutation(np.flatnonzero(y != TARGET))[: int(poison * len(y))]
    x[chosen, :2, :2], y[chosen] = 255, TARGET
    return x, y


def backdoored_cnn():
    """A one-conv network trained 15 epochs on 10 % corner-poisoned data (ASR 1.0, clean accuracy 1.0)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Flatten()(h)))
    x, y = corner_backdoor_data(100, seed=0, poison=0.1)
    return fit_model(TrainConfig(model="gtsrb_cnn", epochs=15, learning_rate=3e-3), model, x, y)


def test_it_unlearns_a_trained_in_backdoor_and_keeps_clean_accuracy():
    model = backdoored_cnn()
    x_test, y_test = corner_backdoor_data(40, seed=1)
    triggered = x_test.copy()
    triggered[:, :2, :2] = 255
    others = y_test != TARGET

    def asr(m):
        return (np.argmax(m.predict_on_batch(triggered[others]), axis=1) == TARGET).mean()

    def clean_accuracy(m):
        return (np.argmax(m.predict_on_batch(x_test), axis=1) == y_test).mean()

    assert asr(model) == 1.0 and clean_accuracy(model) == 1.0
    x, y = corner_backdoor_data(100, seed=2)  # the clean tuning set
    # The authors' outer learning rate (1e-3): with 50 steps on this toy, the default 1e-4 moves too little.
    repaired, metrics = IBau().repair(Params(batch_size=50, learning_rate=1e-3), model, CleanData(x, y, CLASSES),
                                      Context(seed=0, train=TrainConfig(model="gtsrb_cnn")))
    assert repaired is not model and asr(model) == 1.0  # the cached model is untouched
    assert asr(repaired) < 0.5 and clean_accuracy(repaired) > 0.95
    assert metrics["unlearning_steps"] == 5 * 10 and metrics["n_tune"] == len(y)
    assert len(metrics["perturbation_norm"]) == 5 and min(metrics["perturbation_norm"]) > 0


def test_the_same_seed_repairs_the_same_way():
    model = backdoored_cnn()
    x, y = corner_backdoor_data(10, seed=3)
    params = Params(rounds=1, batch_size=25)
    first, _ = unlearn(model, x, y, params, seed=5)
    second, _ = unlearn(model, x, y, params, seed=5)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
