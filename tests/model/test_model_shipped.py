"""The shipped models predict today what they predicted when the fixture was made, and
LightGBM is imported as a plain ``import lightgbm`` would unless a process opts in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from shipped_predictions import FIXTURE, MACHINE_TOLERANCE, SHIPPED, predictions

from callsort.model.card import MODEL_FILE, shipped_model_dir


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_predicts_what_it_did(name):
    """Segments and probabilities on a fixed synthetic recording, against
    tests/data/shipped_predictions.json (the fast model's since it was retrained so that its
    card reproduces; the default model's since its encoder runs in float32, issue 18): any
    change of segmentation, features or model shows here.

    The fast model's figures are the same on every CPU path measured (NumPy's and
    OpenBLAS's too: tests/test_cpu_paths.py), so they must match to rounding; the
    default model's, within the promise of the README ("Across machines")."""
    if not (shipped_model_dir(name) / MODEL_FILE).is_file():
        pytest.skip(f"callsort/models/{name}/model.txt is absent (being regenerated)")
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))[name]
    got = predictions(name)
    assert got["classes"] == expected["classes"]
    np.testing.assert_allclose(got["segments"], expected["segments"], atol=1e-9)
    if name == "fast":
        np.testing.assert_allclose(got["proba"], expected["proba"], rtol=1e-5, atol=1e-6)
        return
    tolerance = MACHINE_TOLERANCE
    got_p, want_p = np.array(got["proba"]), np.array(expected["proba"])
    np.testing.assert_allclose(got_p, want_p, rtol=0, atol=tolerance)
    top = np.sort(want_p, axis=1)
    firm = top[:, -1] - top[:, -2] > 2 * tolerance
    assert (got_p.argmax(axis=1) == want_p.argmax(axis=1))[firm].all()


AFTER = """
    import json, sys
    import lightgbm.compat as compat
    from callsort.model.booster import LIGHTGBM_EXTRAS
    print(json.dumps({
        "blocked": [n for n in LIGHTGBM_EXTRAS if n in sys.modules and sys.modules[n] is None],
        "lightgbm_sklearn": compat.SKLEARN_INSTALLED,
        "lightgbm_pandas": compat.PANDAS_INSTALLED,
        "sklearn_imports": __import__("sklearn.base").base.BaseEstimator.__name__,
        "proba": model.predict_proba(
            __import__("numpy").zeros((1, model.stack.n_features), "float32")).tolist(),
    }))
"""


def run_python(setup: str) -> dict:
    """What :data:`AFTER` sees in a fresh interpreter after ``setup`` (loads ``model``)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(setup) + textwrap.dedent(AFTER)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


PLAIN = """
    from callsort.model.folder import load_model
    model = load_model("fast")
"""


def test_loading_a_model_imports_lightgbm_as_usual():
    """A program that imports callsort and loads a model gets LightGBM whole, with its
    scikit-learn and pandas glue, and sys.modules as a normal import leaves it."""
    seen = run_python(PLAIN)
    assert seen["blocked"] == []
    assert seen["lightgbm_sklearn"] and seen["lightgbm_pandas"]


def test_lean_import_is_an_opt_in_that_leaves_sys_modules_clean():
    """A process callsort owns opts in: LightGBM loads without its glue, the model
    predicts the same, and scikit-learn still imports afterwards."""
    plain = run_python(PLAIN)
    lean = run_python(
        """
        from callsort.model.booster import lean_lightgbm_import
        lean_lightgbm_import()
        import sys
        assert "sklearn" not in sys.modules and "pandas" not in sys.modules
        from callsort.model.folder import load_model
        model = load_model("fast")
        assert "sklearn" not in sys.modules and "pandas" not in sys.modules
        """
    )
    assert lean["blocked"] == []
    assert not lean["lightgbm_sklearn"] and not lean["lightgbm_pandas"]
    assert lean["sklearn_imports"] == "BaseEstimator"
    assert lean["proba"] == plain["proba"]


def test_a_loaded_model_is_a_fitted_estimator():
    """Model.load builds the fitted state inside the classes (no attributes set from
    outside); its classifier predicts as the model does and clones to an unfitted one."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from callsort.model.folder import Model

    model = Model.load("fast")
    classifier = model.classifier
    check_is_fitted(classifier)
    assert classifier is model.classifier  # built once
    assert list(classifier.classes_) == model.classes == model.card.classes
    assert classifier.temperature == model.card.temperature
    X = np.random.default_rng(0).standard_normal((5, model.stack.n_features)).astype(np.float32)
    np.testing.assert_array_equal(classifier.predict_proba(X), model.predict_proba(X))
    unfitted = clone(classifier)
    assert unfitted.get_params() == classifier.get_params()
    with pytest.raises(NotFittedError):
        unfitted.predict(X)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_models_hear_the_features_callsort_train_gives_them_today(name):
    """A shipped model is the build product of today's ``callsort train``: its card's
    feature settings (the encoder's depth included) are those the command trains with."""
    from callsort.cli.training import feature_settings
    from callsort.model.folder import load_model

    expected = feature_settings(fast=name == "fast")
    assert load_model(name).feature_settings == expected
