"""The protocols of a run over one or more corpora: each corpus's speaker folds
(every other speaker trains) and leave-one-corpus-out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from callsort.errors import DatasetError
from callsort.features.spectral import feature_names
from callsort.settings import AnalysisSettings, FeatureSettings
from callsort.training.cache import clip_features
from callsort.training.config import CONDITIONS, ClipFeatures, TrainingConfig
from callsort.training.corpora import Clip, find_corpora
from callsort.training.crossval import FoldModel, cross_validate, make_classifier, speaker_folds
from callsort.training.tuning import tuned_config


@dataclass(frozen=True)
class ProtocolRun:
    """Clips, their features per condition, and the settings they were made with."""

    clips: list[Clip]
    features: dict[str, list[ClipFeatures]]
    settings: AnalysisSettings
    feature_settings: FeatureSettings
    feature_names: list[str]


def extract(
    data_dir: Path | str | Sequence[Path | str],
    config: TrainingConfig,
    *,
    jobs: int,
    cache_dir: Path | None,
    on_done: Callable[[], None] | None = None,
    conditions: Sequence[str] = CONDITIONS,
    feature_settings: FeatureSettings | None = None,
    clips: Sequence[Clip] | None = None,
    settings: AnalysisSettings | None = None,
) -> ProtocolRun:
    """Find the clips of one or more corpus folders (or take ``clips``, read from them
    already) and compute their features under every condition (cached), segmented as
    ``settings`` say (default ``AnalysisSettings()``)."""

    settings = settings or AnalysisSettings()
    feature_settings = feature_settings or FeatureSettings()
    conditions = tuple(dict.fromkeys([*conditions, *config.train_conditions]))
    folders = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    if clips is None:
        clips = find_corpora(
            folders,
            classes=config.classes,
            calm_from_neutral=config.calm_from_neutral,
            neutral_for_missing_calm=config.neutral_for_missing_calm,
        )
    clips = list(clips)
    features = {
        cond: clip_features(
            clips,
            condition=cond,
            settings=settings,
            feature_settings=feature_settings,
            cache_dir=cache_dir,
            jobs=jobs,
            on_done=on_done,
        )
        for cond in conditions
    }
    heard = Counter(
        c.label for c, f in zip(clips, features[conditions[0]], strict=True) if len(f.X)
    )
    if len(heard) < 2:  # found only now: whether a clip holds speech takes its features
        found = (
            f"in the clips of one class only ({', '.join(heard)}: {sum(heard.values())})"
            if heard
            else f"in none of the {len(clips)} clips"
        )
        raise DatasetError(
            f"speech was found {found} ({conditions[0]} audio): a model needs speech of at "
            "least two classes"
        )
    return ProtocolRun(clips, features, settings, feature_settings, feature_names(feature_settings))


def evaluate_protocol(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    jobs: int,
    on_fold: Callable[[int, dict], None] | None = None,
    on_candidate: Callable[[dict], None] | None = None,
    folds: Sequence[Sequence[str]] | None = None,
    on_model: Callable[[int, FoldModel], None] | None = None,
) -> dict:
    """Cross-validated figures of ``config`` on every speaker of the run (or on the
    test speakers of ``folds``; see :func:`cross_validate`, which passes each fold's
    model to ``on_model``).

    With ``config.tune`` the search of :func:`tuned_config` is nested in every
    fold: it sees that fold's training speakers only.
    """
    make_model = partial(make_classifier, jobs=jobs)
    choose = None
    if config.tune:

        def choose(train_index: np.ndarray):
            return tuned_config(
                run.clips,
                run.features,
                train_index,
                config,
                make_model=make_model,
                feature_names=run.feature_names,
                on_candidate=on_candidate,
            )

    return cross_validate(
        run.clips,
        run.features,
        classes=config.classes,
        config=config,
        make_model=make_model,
        feature_names=run.feature_names,
        on_fold=on_fold,
        choose_config=choose,
        folds=folds,
        on_model=on_model,
    )


def corpus_folds(clips: Sequence[Clip], corpus: str, *, n_folds: int) -> list[list[str]]:
    """Speaker folds inside one corpus: ``n_folds`` when it is the only corpus; beside
    others, fewer if need be so that each fold tests at least 3 speakers (nEMO's 9
    speakers: 3 folds, each trained on the other 6 and every speaker of the others)."""
    speakers = sorted({c.speaker for c in clips if c.corpus == corpus})
    if len({c.corpus for c in clips}) > 1:
        n_folds = max(2, min(n_folds, len(speakers) // 3))
    return speaker_folds(speakers, n_folds)


def corpus_protocols(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    jobs: int,
    headline_only: bool = False,
    on_fold: Callable[[str, int, dict], None] | None = None,
    kinds: Sequence[str] = ("folds", "loco"),
    fold_subset: Sequence[int] | None = None,
    on_model: Callable[[str, int, FoldModel], None] | None = None,
) -> dict:
    """The protocols of a run over one or more corpora.

    For each corpus: folds by speaker inside it (every other speaker, of every
    corpus, trains), and, with several corpora, leave-one-corpus-out (the other
    corpora train, every clip of this one tests). The first corpus's folds are the
    headline: their figures stand at the top level, as with one corpus; the rest
    are under ``other_protocols``. ``kinds`` runs only the speaker folds
    (``"folds"``) or only leave-one-corpus-out (``"loco"``) to save time;
    ``fold_subset`` (0-based) tests only those folds of each corpus that has them (each
    trained exactly as in the whole protocol). ``on_model(protocol, k, fold)`` gets each fold's
    model (:func:`cross_validate`).
    """
    corpora = list(dict.fromkeys(c.corpus for c in run.clips))
    runs: dict[str, dict] = {}
    for corpus in (corpora[:1] if headline_only else corpora) if "folds" in kinds else ():
        folds = corpus_folds(run.clips, corpus, n_folds=config.n_folds)
        name = f"{corpus}: {len(folds)} folds by speaker"
        if fold_subset is not None:
            chosen = [k for k in fold_subset if k < len(folds)]
            if not chosen:  # a corpus with fewer folds (nEMO's 3 beside RAVDESS's 6)
                continue
            folds = [folds[k] for k in chosen]
            name += f", folds {','.join(str(k + 1) for k in chosen)}"
        runs[name] = evaluate_protocol(
            run,
            config,
            jobs=jobs,
            folds=folds,
            on_fold=(lambda k, r, n=name: on_fold(n, k, r)) if on_fold else None,
            on_model=(lambda k, f, n=name: on_model(n, k, f)) if on_model else None,
        )
    if not headline_only and len(corpora) > 1 and "loco" in kinds:
        for corpus in corpora:
            speakers = sorted({c.speaker for c in run.clips if c.corpus == corpus})
            name = f"{corpus}: trained without it"
            runs[name] = evaluate_protocol(
                run,
                config,
                jobs=jobs,
                folds=[speakers],
                on_fold=(lambda k, r, n=name: on_fold(n, k, r)) if on_fold else None,
                on_model=(lambda k, f, n=name: on_model(n, k, f)) if on_model else None,
            )
    headline, *others = runs
    metrics = dict(runs[headline])
    metrics["headline"] = headline
    metrics["n_folds"] = len(metrics["clean"]["per_fold"])
    metrics["other_protocols"] = {name: runs[name] for name in others}
    return metrics
