"""The linear head on an encoder's embedding and its stacking below LightGBM: the head's
probabilities are the logistic regression's own, whatever classes a fold holds, and the
scores LightGBM learns from are out of fold (a head that memorised its rows is not trusted)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from callsort.model.classifier import EmotionClassifier
from callsort.model.head import fit_linear_head

CLASSES = ("angry", "calm", "happy", "sad")


def two_of_four(seed: int = 0, *, n: int = 400, dims: int = 30, gap: float = 6.0):
    """Rows of classes 1 and 3 only (of 4), their means ``gap`` standard deviations
    apart along one random direction."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.5, 1, 3)
    direction = rng.normal(size=dims)
    direction /= np.linalg.norm(direction)
    X = rng.standard_normal((n, dims)) + 5.0
    X += np.outer(np.where(labels == 3, gap / 2, -gap / 2), direction)
    return X, labels


def test_a_head_trained_on_two_of_four_classes_predicts_as_the_binary_regression():
    X, labels = two_of_four()
    train, test = np.arange(300), np.arange(300, 400)
    columns = np.arange(X.shape[1])
    head = fit_linear_head(X[train], labels[train], columns=columns, n_classes=4, C=0.01)
    log_p = head.log_proba(X[test])
    # the independent expectation: scikit-learn's own regression on the same standardised rows
    mean, scale = X[train].mean(axis=0), X[train].std(axis=0) + 1e-6
    lr = LogisticRegression(C=0.01, max_iter=300, tol=1e-3)
    lr.fit((X[train] - mean) / scale, labels[train])
    expected = lr.predict_log_proba((X[test] - mean) / scale)
    np.testing.assert_allclose(log_p[:, [1, 3]], expected, atol=1e-4)
    assert (log_p[:, [0, 2]] <= -29).all()  # classes never seen stay out of reach
    assert np.mean(np.argmax(log_p, axis=1) == labels[test]) >= 0.95


def test_a_classifier_whose_training_holds_two_of_four_classes_learns_from_the_embedding():
    """The label is in the embedding only (the hand-made columns are noise): the stack
    does as well on new speakers as a logistic regression on the embedding. A head that
    gave both classes the same logits (the binary coefficients broadcast to both) left
    LightGBM only what leaked through the clipped scores of the absent classes: 0.81."""
    X_emb, labels = two_of_four(0, n=480, gap=3.0)
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((len(X_emb), 4)), X_emb]).astype(np.float32)
    names = [f"h{i}" for i in range(4)] + [f"enc_mean_{i}" for i in range(X_emb.shape[1])]
    y = np.array(CLASSES)[labels]
    speakers = np.arange(len(X)) // 20  # 24 speakers: 16 train, 8 are new to the model
    train, test = speakers < 16, speakers >= 16
    model = EmotionClassifier(n_estimators=50, classes=CLASSES).fit(
        X[train], y[train], feature_names=names, groups=speakers[train]
    )
    lr = LogisticRegression(C=0.01, max_iter=300).fit(X_emb[train], labels[train])
    reference = np.mean(lr.predict(X_emb[test]) == labels[test])  # 0.94
    assert np.mean(model.predict(X[test]) == y[test]) >= reference - 0.04
    assert set(model.predict(X[test])) <= {"calm", "sad"}


def test_a_head_trained_on_one_class_predicts_that_class():
    X, _ = two_of_four()
    head = fit_linear_head(X, np.full(len(X), 2), columns=np.arange(5), n_classes=4, C=0.01)
    assert (np.argmax(head.log_proba(X), axis=1) == 2).all()


def memorisable_noise(seed: int = 0, *, n_speakers: int = 48, per_speaker: int = 16):
    """Hand-made columns with a modest real signal, and 200 embedding columns of pure
    noise: a regression fitted on 256 rows memorises them (in-sample accuracy ~0.9),
    and they say nothing about any other row."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    labels = np.tile(np.arange(4), n // 4)
    handmade = 1.2 * rng.normal(size=(4, 5))[labels] + rng.standard_normal((n, 5))
    X = np.hstack([handmade, rng.standard_normal((n, 200))]).astype(np.float32)
    names = [f"h{i}" for i in range(5)] + [f"enc_mean_{i}" for i in range(200)]
    return X, np.array(CLASSES)[labels], names, np.repeat(np.arange(n_speakers), per_speaker)


def test_stacking_is_out_of_fold_so_a_memorising_head_is_not_trusted():
    """LightGBM learns from head scores of rows the head never saw: here they are noise,
    so it leans on the hand-made columns and does as well on new speakers as LightGBM
    on those columns alone. Scores of a head that saw the rows (leaky stacking) look
    near perfect in training and drag new speakers' accuracy down by ~0.2."""
    X, y, names, speakers = memorisable_noise()
    train, test = speakers < 16, speakers >= 16
    model = EmotionClassifier(n_estimators=100).fit(
        X[train], y[train], feature_names=names, groups=speakers[train]
    )
    stacked = np.mean(model.predict(X[test]) == y[test])
    handmade_only = EmotionClassifier(n_estimators=100).fit(
        X[train][:, :5], y[train], feature_names=names[:5]
    )
    reference = np.mean(handmade_only.predict(X[test][:, :5]) == y[test])
    assert reference > 0.6  # the hand-made signal is real (chance is 0.25)
    assert stacked >= reference - 0.06, (stacked, reference)
    gain = dict(
        zip(model.booster_.feature_name(), model.booster_.feature_importance("gain"), strict=True)
    )
    head_share = sum(v for k, v in gain.items() if k.startswith("head_logp_")) / sum(gain.values())
    assert head_share < 0.3, head_share
