"""Adapters (callsort adapt's learning): the pulled fit, its limits, and a model folder with one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from callsort.model.adapter import (
    Adapter,
    balanced_weights,
    fit_adapter,
    fit_pulled_logistic,
    input_standardisation,
    pulled_loss,
)

N_CLASSES = 4


def problem(seed: int = 0, n: int = 120, d: int = 6):
    """A small multinomial problem with an offset and a starting point."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    true_W = rng.normal(0, 1.5, size=(N_CLASSES, d))
    labels = (Z @ true_W.T + rng.gumbel(size=(n, N_CLASSES))).argmax(1)
    offset = rng.normal(0, 0.5, size=(n, N_CLASSES))
    coef0 = rng.normal(0, 0.3, size=(N_CLASSES, d))
    intercept0 = rng.normal(0, 0.3, size=N_CLASSES)
    return Z, labels, offset, coef0, intercept0


def test_the_gradient_is_the_objectives_derivative():
    Z, labels, offset, coef0, intercept0 = problem(n=30, d=3)
    weights = balanced_weights(labels, n_classes=N_CLASSES)
    rng = np.random.default_rng(1)
    point = rng.normal(0, 0.5, size=N_CLASSES * 3 + N_CLASSES)
    kwargs = dict(offset=offset, weights=weights, coef0=coef0, intercept0=intercept0, lam=0.05)
    _, grad = pulled_loss(point, Z, labels, **kwargs)
    numeric = approx_fprime(point, lambda p: pulled_loss(p, Z, labels, **kwargs)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_the_fit_stops_where_the_numerical_gradient_is_zero():
    Z, labels, offset, coef0, intercept0 = problem()
    lam = 0.01
    coef, intercept = fit_pulled_logistic(
        Z, labels, n_classes=N_CLASSES, lam=lam, offset=offset, coef0=coef0, intercept0=intercept0
    )
    weights = balanced_weights(labels, n_classes=N_CLASSES)
    kwargs = dict(offset=offset, weights=weights, coef0=coef0, intercept0=intercept0, lam=lam)
    point = np.concatenate([coef.ravel(), intercept])
    numeric = approx_fprime(point, lambda p: pulled_loss(p, Z, labels, **kwargs)[0], 1e-7)
    assert np.abs(numeric).max() < 1e-4
    # and it moved: the start is not an optimum
    start = np.concatenate([coef0.ravel(), intercept0])
    assert np.abs(approx_fprime(start, lambda p: pulled_loss(p, Z, labels, **kwargs)[0])).max() > 1e-2


def test_without_a_pull_it_is_scikit_learns_unpenalised_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    Z = rng.standard_normal((400, 5))
    labels = (Z @ rng.normal(0, 1, (N_CLASSES, 5)).T + rng.gumbel(size=(400, N_CLASSES))).argmax(1)
    weights = np.ones(len(Z))
    coef, intercept = fit_pulled_logistic(
        Z, labels, n_classes=N_CLASSES, lam=0.0, sample_weight=weights, max_iter=2000
    )
    lr = LogisticRegression(C=np.inf, max_iter=5000, tol=1e-10).fit(Z, labels)
    ours = Z @ coef.T + intercept
    theirs = lr.decision_function(Z)
    # logits are defined up to a constant per row: compare centred logits
    ours -= ours.mean(axis=1, keepdims=True)
    theirs -= theirs.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_an_infinite_pull_or_no_data_keeps_the_start():
    Z, labels, offset, coef0, intercept0 = problem()
    coef, intercept = fit_pulled_logistic(
        Z, labels, n_classes=N_CLASSES, lam=1e9, offset=offset, coef0=coef0, intercept0=intercept0
    )
    np.testing.assert_allclose(coef, coef0, atol=1e-8)
    np.testing.assert_allclose(intercept, intercept0, atol=1e-8)
    coef, intercept = fit_pulled_logistic(
        Z[:0], labels[:0], n_classes=N_CLASSES, lam=0.01, coef0=coef0, intercept0=intercept0
    )
    np.testing.assert_array_equal(coef, coef0)


def test_a_residual_adapter_with_a_huge_pull_gives_the_base_probabilities():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 8)).astype(np.float32)
    base = rng.dirichlet(np.ones(N_CLASSES), size=50)
    labels = rng.integers(0, N_CLASSES, 50)
    adapter = fit_adapter(
        X,
        labels,
        kind="residual",
        lam=1e12,
        columns=np.arange(8),
        mean=np.zeros(8),
        scale=np.ones(8),
        n_classes=N_CLASSES,
        base_proba=base,
    )
    np.testing.assert_allclose(adapter.adjusted(X, base), base, rtol=1e-9, atol=1e-12)


def test_the_adapter_survives_its_file():
    Z, labels, offset, coef0, intercept0 = problem()
    adapter = Adapter(
        kind="residual",
        columns=np.arange(6),
        mean=np.zeros(6),
        scale=np.ones(6),
        coef=coef0,
        intercept=intercept0,
    )
    again = Adapter.from_npz(adapter.to_npz())
    assert again.kind == "residual"
    for name in ("columns", "mean", "scale", "coef", "intercept"):
        np.testing.assert_array_equal(getattr(again, name), getattr(adapter, name))


def test_balanced_weights_give_every_present_class_the_same_total():
    labels = np.array([0, 0, 0, 1, 3, 3])
    w = balanced_weights(labels, n_classes=N_CLASSES)
    assert w.sum() == pytest.approx(1.0)
    totals = np.bincount(labels, weights=w, minlength=N_CLASSES)
    np.testing.assert_allclose(totals[[0, 1, 3]], 1 / 3)
    assert totals[2] == 0


def test_inputs_are_standardised_by_the_cards_population():
    normalisation = {"mean": [1.0, -2.0], "var": [4.0, 0.25], "weight": 5.0}
    mean, scale = input_standardisation(normalisation, n_inputs=4)
    np.testing.assert_allclose(mean, [1.0, -2.0, 0.0, 0.0])
    np.testing.assert_allclose(scale, [2.0, 0.5, 1.0, 1.0], rtol=1e-5)
