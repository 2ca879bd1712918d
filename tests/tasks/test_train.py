import subprocess
import sys

import numpy as np

from tasks.poison import AttackConfig, poison_dataset
from tasks.train import TrainConfig, TrainedModel, train_model
from tests.conftest import make_dataset


def test_trained_model_roundtrip_predicts_the_same(tmp_path):
    dataset = make_dataset(n_classes=3, per_class=10, size=32)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="yellow_square", poison_pct=20), dataset)
    trained = train_model(TrainConfig(model="gtsrb_cnn", epochs=1, batch_size=8), dataset, poisoned)
    assert trained.keep.tolist() == list(range(len(dataset.x_train)))
    trained.save(tmp_path)
    loaded = TrainedModel.load(tmp_path)
    x = np.asarray(dataset.x_test)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), trained.model.predict(x, verbose=0), atol=1e-6)
    assert loaded.metrics == trained.metrics


def test_configure_tensorflow_limits_threads_before_tensorflow_starts():
    code = (
        "from tasks.runtime import configure_tensorflow; configure_tensorflow(cpus=1.5);"
        "import tensorflow as tf, os;"
        "print(tf.config.threading.get_intra_op_parallelism_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "2"]


def test_transfer_learning_trains_only_the_new_layer_and_records_the_weights(tmp_path):
    import hashlib

    import keras

    from tasks.models import VGG_FACE_LAYERS, build_model, save_vgg_face_weights

    dataset = make_dataset(n_classes=3, per_class=6, size=32)
    keras.utils.set_random_seed(5)
    path = tmp_path / "vgg_face.h5"
    save_vgg_face_weights(build_model("vgg16_face", (32, 32, 3), 3, random_init=True), str(path))
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="yellow_square", poison_pct=50), dataset)
    config = TrainConfig(model="vgg16_face", weights=str(path), epochs=2, batch_size=8, optimizer="adadelta", learning_rate=0.1)
    trained = train_model(config, dataset, poisoned)

    pretrained = build_model("vgg16_face", (32, 32, 3), 3, weights=str(path))
    for name in VGG_FACE_LAYERS:
        for after, before in zip(trained.model.get_layer(name).get_weights(), pretrained.get_layer(name).get_weights()):
            np.testing.assert_array_equal(after, before)
    keras.utils.set_random_seed(config.seed)  # the untrained last layer train_model started from
    fresh = build_model("vgg16_face", (32, 32, 3), 3, weights=str(path)).get_layer("predictions").get_weights()[0]
    assert not np.allclose(trained.model.get_layer("predictions").get_weights()[0], fresh)
    assert trained.metrics["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cosine_schedule_decays_the_learning_rate_to_zero_over_every_batch_of_every_epoch():
    from tasks.models import build_model
    from tasks.train import fit_model, learning_rate, tuning_config

    cosine = TrainConfig(model="gtsrb_cnn", epochs=3, batch_size=8, learning_rate=0.01, lr_schedule="cosine")
    schedule = learning_rate(cosine, 20)  # 3 batches an epoch, the last one of 4 images: 9 steps
    rates = [float(schedule(step)) for step in range(10)]
    np.testing.assert_allclose(rates, [0.005 * (1 + np.cos(np.pi * step / 9)) for step in range(10)], atol=1e-9)
    assert rates[0] == np.float32(0.01) and rates[-1] == 0.0

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, 20)
    trained = fit_model(cosine, build_model("gtsrb_cnn", x.shape[1:], 3), x, y)
    assert int(trained.optimizer.iterations) == 9 and float(trained.optimizer.learning_rate) == 0.0
    constant = cosine.model_copy(update={"lr_schedule": "constant"})
    assert learning_rate(constant, 20) == 0.01
    trained = fit_model(constant, build_model("gtsrb_cnn", x.shape[1:], 3), x, y)
    assert float(trained.optimizer.learning_rate) == np.float32(0.01)
    # A repair fine-tunes at its own rate, whatever schedule trained the model.
    tuning = tuning_config(cosine, epochs=2, learning_rate=1e-4)
    assert (tuning.lr_schedule, tuning.epochs, tuning.learning_rate, tuning.batch_size) == ("constant", 2, 1e-4, 8)

def test_the_schedule_enters_the_train_config_key_only_when_not_constant():
    from orchestrator.hashing import content_hash

    constant = TrainConfig(model="gtsrb_cnn")
    assert "lr_schedule" not in constant.model_dump(mode="json")
    assert content_hash(constant.model_dump(mode="json")) == "0ce93e3f24522681"  # its key before the option
    cosine = TrainConfig(model="gtsrb_cnn", lr_schedule="cosine")
    assert cosine.model_dump(mode="json")["lr_schedule"] == "cosine"
    assert TrainConfig.model_validate(cosine.model_dump(mode="json")) == cosine
