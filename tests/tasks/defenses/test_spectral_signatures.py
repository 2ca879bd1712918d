import numpy as np
import pytest

from tasks.defenses.spectral_signatures import Params, art_scores, centered_scores, detect_poison


def planted(seed: int, n_clean: int = 400, n_poison: int = 40, dim: int = 64):
    """Activations of one class: a clean cloud far from the origin, poison shifted along one direction."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 1, dim) * 6  # ReLU features are not centred
    direction = rng.normal(0, 1, dim)
    direction /= np.linalg.norm(direction)
    clean = offset + rng.normal(0, 1, (n_clean, dim))
    poison = offset + rng.normal(0, 1, (n_poison, dim)) + 6 * direction
    activations = np.vstack([clean, poison]).astype(np.float32)
    is_poison = np.r_[np.zeros(n_clean, bool), np.ones(n_poison, bool)]
    return activations, is_poison


@pytest.mark.parametrize("seed", range(5))
def test_centered_score_catches_planted_poison_on_every_seed(seed):
    activations, is_poison = planted(seed)
    y = np.zeros(len(activations), dtype=np.int64)
    flagged = detect_poison(Params(expected_pp_poison=0.1, eps_multiplier=1.5, score="centered"), y, activations, 1)
    assert flagged[is_poison].mean() >= 0.9
    assert flagged.sum() == pytest.approx(0.15 * len(y), abs=1)


def test_art_score_is_arts_function_and_differs_from_the_centred_one():
    activations, _ = planted(0)
    from art.defences.detector.poison import SpectralSignatureDefense

    np.testing.assert_allclose(art_scores(activations), SpectralSignatureDefense.spectral_signature_scores(activations).ravel())
    assert not np.allclose(np.argsort(art_scores(activations)), np.argsort(centered_scores(activations)))


def test_removing_everything_is_allowed_and_every_class_is_cut_alike():
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(60, 8)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    assert detect_poison(Params(expected_pp_poison=0.5, eps_multiplier=2), y, activations, 3).all()
    flagged = detect_poison(Params(expected_pp_poison=0.1, eps_multiplier=2), y, activations, 3)
    assert [int(flagged[y == c].sum()) for c in range(3)] == [4, 4, 4]


def test_arts_uncentred_score_can_flag_the_wrong_tail():
    # Seed 0 of the planted data: ART's score keeps all 40 poisons (the failure SPEC §2 records),
    # the centred score removes all of them.
    activations, is_poison = planted(0)
    y = np.zeros(len(activations), dtype=np.int64)
    caught = {
        score: detect_poison(Params(expected_pp_poison=0.1, eps_multiplier=1.5, score=score), y, activations, 1)[is_poison].mean()
        for score in ("art", "centered")
    }
    assert caught == {"art": 0.0, "centered": 1.0}


def test_roc_over_shares_holds_every_configurations_operating_point():
    from tasks.defenses.spectral_signatures import ROC_SHARES, class_scores, roc_over_shares

    activations, is_poison = planted(1)
    y = np.zeros(len(activations), dtype=np.int64)
    params = Params(expected_pp_poison=0.1, eps_multiplier=1.5, score="centered")
    roc = roc_over_shares(class_scores(params, y, activations, 1), is_poison)
    assert len(roc["roc_fpr"]) == len(roc["roc_tpr"]) == len(ROC_SHARES)
    assert np.all(np.diff(roc["roc_tpr"]) >= 0) and np.all(np.diff(roc["roc_fpr"]) >= 0), "more removed, never less caught"
    flagged = detect_poison(params, y, activations, 1)  # share 0.15 is point 15 of the curve
    assert roc["roc_tpr"][15] == flagged[is_poison].mean()
    assert roc["roc_fpr"][15] == flagged[~is_poison].mean()
    assert roc["auroc"] > 0.95


def test_roc_of_the_wrong_tail_is_worse_than_chance_and_benign_data_has_none():
    from tasks.defenses.spectral_signatures import class_scores, roc_over_shares

    activations, is_poison = planted(0)
    y = np.zeros(len(activations), dtype=np.int64)
    art = roc_over_shares(class_scores(Params(score="art"), y, activations, 1), is_poison)
    assert art["auroc"] < 0.5, "ART's uncentred score ranks the poison last on this seed"
    benign = roc_over_shares(class_scores(Params(), y, activations, 1), np.zeros(len(y), bool))
    assert np.isnan(benign["auroc"]) and np.isnan(benign["roc_tpr"]).all()
