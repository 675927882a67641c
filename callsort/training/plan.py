"""What ``callsort train`` and ``callsort evaluate`` will do, checked and estimated
before any feature is computed: the corpora and their classes, the audio conditions,
the protocols and their folds, every model fit, and the time they should take.

Whatever would stop a run later (a class alone, too few speakers for the folds, a
held-out speaker no corpus has) is refused here, in seconds, as a
:class:`~callsort.errors.DatasetError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from callsort.errors import DatasetError
from callsort.settings import AnalysisSettings, FeatureSettings
from callsort.training.cache import cached_file
from callsort.training.config import CODEC_CONDITIONS, CONDITIONS, TrainingConfig
from callsort.training.corpora import Clip, Corpus, read_corpora
from callsort.training.crossval import INNER_FOLDS, MIX_KINDS
from callsort.training.protocol import corpus_folds
from callsort.training.tuning import TUNING_CANDIDATES


@dataclass(frozen=True)
class PlanRates:
    """CPU seconds per unit of work, for the estimate (divided by ``--jobs``).

    Measured by ``benchmarks/train_plan.py`` on the project's 2-core machine
    (``benchmarks/results/train-plan.json``): features of RAVDESS clips computed
    without the cache, and fold 1 of RAVDESS's protocol fitted and scored from it,
    in one thread. A busy machine, or LightGBM's threads waiting for each other,
    make a run slower than the estimate.
    """

    extract_fast: float = 0.064  # one clip's hand-made features under one condition
    extract_encoder: float = 0.16  # the same with the encoder's embedding
    cached: float = 0.0013  # one clip-condition read from the cache
    fit_fast: float = 0.011  # per training clip and condition (LightGBM, normalisation)
    fit_encoder: float = 0.017  # (the linear head's out-of-fold fits besides)
    score_fast: float = 0.0001  # per test clip, condition and pseudo-call kind
    score_encoder: float = 0.0057


RATES = PlanRates()


@dataclass(frozen=True)
class Fit:
    """One model fit of a run: on ``n_train`` clips, scoring ``n_test`` (0: the final model)."""

    protocol: str
    n_train: int
    n_test: int
    test_conditions: int
    inner: bool = False  # a fit of the nested search (--tune)


@dataclass(frozen=True)
class TrainingPlan:
    """A checked run: its corpora, conditions, protocols and fits, and an estimate."""

    corpora: list[Corpus]
    classes: tuple[str, ...]
    train_conditions: tuple[str, ...]
    conditions: tuple[str, ...]  # every condition features are computed under
    protocols: dict[str, int]  # name -> folds (fits), as the card names them
    fits: list[Fit]  # the nested search's included
    n_cached: int  # clip-conditions already in the cache
    features_s: float  # estimated seconds
    fits_s: float
    jobs: int
    warnings: list[str]

    @property
    def clips(self) -> list[Clip]:
        """Every corpus's clips, in the folders' order."""
        return [clip for corpus in self.corpora for clip in corpus.clips]

    @property
    def n_features(self) -> int:
        """Clip-conditions the run reads or computes."""
        return len(self.clips) * len(self.conditions)

    def describe(self) -> list[str]:
        """The plan as lines of text, for the user before the run starts."""
        clips = self.clips
        lines = [
            f"plan: {len(clips):,} clips from {_n(len(self.corpora), 'corpus', 'corpora')}, classes "
            + ", ".join(self.classes)
        ]
        for corpus in self.corpora:
            counts = Counter(c.label for c in corpus.clips)
            speakers = len({c.speaker for c in corpus.clips})
            line = (
                f"  {corpus.name}: {len(corpus.clips):,} clips ("
                + ", ".join(f"{k} {counts[k]}" for k in self.classes)
                + f"), {speakers} speakers"
            )
            if corpus.ignored:
                line += "; not used: " + ", ".join(f"{k} {n}" for k, n in corpus.ignored.items())
            lines.append(line)
            lines.extend(f"  {corpus.name}: {note}" for note in corpus.notes)
        tested = [c for c in self.conditions if c not in self.train_conditions]
        lines.append(
            "audio conditions: "
            + ", ".join(self.train_conditions)
            + " (training)"
            + (f", {', '.join(tested)} (tests only)" if tested else "")
            + f"; {self.n_features:,} clip features, {self.n_cached:,} cached, "
            f"{self.n_features - self.n_cached:,} to compute"
        )
        protocols = [f"{name} ({_n(n, 'fit')})" for name, n in self.protocols.items()]
        final = [f for f in self.fits if f.protocol == FINAL and not f.inner]
        if final:
            protocols.append(f"final model on {final[0].n_train:,} clips (1 fit)")
        lines.append("fits: " + "; ".join(protocols) if protocols else "fits: none")
        if any(f.inner for f in self.fits):
            lines.append(f"  with the nested search (--tune): {len(self.fits):,} fits in all")
        lines.append(
            f"estimate: about {_duration(self.features_s + self.fits_s)} with "
            f"{_n(self.jobs, 'process', 'processes')} (features {_duration(self.features_s)}, {_n(len(self.fits), 'fit')} "
            f"{_duration(self.fits_s)}; on idle cores, from rates measured on a 2-core machine)"
        )
        return lines


FINAL = "final model"


def plan_training(
    folders: Sequence[Path | str],
    config: TrainingConfig,
    *,
    evaluate: bool,
    final: bool,
    jobs: int,
    cache_dir: Path | None,
    feature_settings: FeatureSettings,
    settings: AnalysisSettings | None = None,
    headline_only: bool = False,
    codecs: bool = True,
    rates: PlanRates = RATES,
) -> TrainingPlan:
    """Read and check the corpora, and plan the run: the protocols when ``evaluate``
    (only the first corpus's folds when ``headline_only``), the final model when
    ``final``. Refuses what would fail later; says what is odd but usable. ``settings``:
    the segmentation the features are cached under (default ``AnalysisSettings()``)."""
    corpora = read_corpora(
        folders,
        classes=config.classes,
        calm_from_neutral=config.calm_from_neutral,
        neutral_for_missing_calm=config.neutral_for_missing_calm,
    )
    clips = [clip for corpus in corpora for clip in corpus.clips]
    counts = Counter(c.label for c in clips)
    present = [c for c in config.classes if counts[c]]
    if len(present) < 2:
        raise DatasetError(
            f"only {len(present)} of the classes has clips ({_counts(counts, config.classes)}): "
            "a model needs clips of at least two (--classes chooses the classes)"
        )
    warnings = [
        f"class {c} has no clip in any corpus: the model will never predict it"
        + _did_you_mean(c, corpora)
        for c in config.classes
        if not counts[c]
    ]
    encoder = feature_settings.encoder is not None
    fits: list[Fit] = []
    protocols: dict[str, int] = {}
    tested = (*CONDITIONS, *(CODEC_CONDITIONS if codecs else ()))
    if evaluate:
        for name, train, test in _protocol_runs(corpora, config, headline_only):
            protocols[name] = protocols.get(name, 0) + 1
            _check_training(train, config, encoder=encoder, what=f"{name}, a fold")
            fits += _with_search(Fit(name, len(train), len(test), len(tested)), config)
    if final:
        held_out = set(config.holdout_speakers)
        unknown = held_out - {c.speaker for c in clips}
        if unknown:
            raise DatasetError(
                f"held-out speakers {', '.join(sorted(unknown))} are in none of the corpora "
                f"(their speakers: {_speakers(clips)})"
            )
        train = [c for c in clips if c.speaker not in held_out]
        _check_training(train, config, encoder=encoder, what="the final model")
        fits += _with_search(Fit(FINAL, len(train), 0, 0), config)
    conditions = tuple(
        dict.fromkeys([*(tested if evaluate else ("clean",)), *config.train_conditions])
    )
    n_cached = _n_cached(
        clips, conditions, feature_settings, settings or AnalysisSettings(), cache_dir
    )
    extract = rates.extract_encoder if encoder else rates.extract_fast
    features_s = (len(clips) * len(conditions) - n_cached) * extract + n_cached * rates.cached
    kinds = len(MIX_KINDS) + 1 if config.channel_normalisation else 1
    per_train = (rates.fit_encoder if encoder else rates.fit_fast) * len(config.train_conditions)
    per_test = (rates.score_encoder if encoder else rates.score_fast) * kinds
    fits_s = sum(
        f.n_train * config.contexts_per_clip * per_train + f.n_test * f.test_conditions * per_test
        for f in fits
    )
    return TrainingPlan(
        corpora=corpora,
        classes=tuple(config.classes),
        train_conditions=tuple(config.train_conditions),
        conditions=conditions,
        protocols=protocols,
        fits=fits,
        n_cached=n_cached,
        features_s=features_s / max(jobs, 1),
        fits_s=fits_s / max(jobs, 1),
        jobs=jobs,
        warnings=warnings,
    )


def _protocol_runs(corpora: list[Corpus], config: TrainingConfig, headline_only: bool):
    """(protocol name, training clips, test clips) of every fold, as corpus_protocols runs
    them; refuses a corpus with too few speakers for its folds."""
    clips = [clip for corpus in corpora for clip in corpus.clips]
    for corpus in corpora[:1] if headline_only else corpora:
        try:
            folds = corpus_folds(clips, corpus.name, n_folds=config.n_folds)
        except DatasetError:
            n = len({c.speaker for c in corpus.clips})
            need = config.n_folds if len(corpora) == 1 else 2
            raise DatasetError(
                f"{corpus.name} has {n} speaker{'s' * (n != 1)} ({_speakers(corpus.clips)}); "
                f"the evaluation's folds by speaker need at least {need} "
                "(callsort train --no-evaluate fits the model without them)"
            ) from None
        name = f"{corpus.name}: {len(folds)} folds by speaker"
        for fold in folds:
            test = [c for c in clips if c.speaker in set(fold)]
            yield name, [c for c in clips if c.speaker not in set(fold)], test
    if not headline_only and len(corpora) > 1:
        for corpus in corpora:
            others = [c for c in clips if c.corpus != corpus.name]
            yield f"{corpus.name}: trained without it", others, corpus.clips


def _check_training(train: list[Clip], config: TrainingConfig, *, encoder: bool, what: str):
    """Refuse a training set a fit would fail on."""
    speakers = {c.speaker for c in train}
    need = max(2 if encoder else 1, INNER_FOLDS if config.tune else 1)
    if len(speakers) < need:
        why = (
            f"the nested search (--tune) cuts them into {INNER_FOLDS} folds"
            if config.tune
            else "the encoder's head is stacked out of fold by speaker"
        )
        raise DatasetError(
            f"{what} would train on {len(speakers)} speaker{'s' * (len(speakers) != 1)}: "
            f"{why}, so it needs at least {need}"
        )
    if len({c.label for c in train}) < 2:
        raise DatasetError(f"{what} would train on one class only ({train[0].label})")


def _with_search(fit: Fit, config: TrainingConfig) -> list[Fit]:
    """The fit, preceded with --tune by the nested search's inner fits."""
    if not config.tune:
        return [fit]
    inner_test = fit.n_train // INNER_FOLDS
    inner = Fit(fit.protocol, fit.n_train - inner_test, inner_test, len(CONDITIONS), inner=True)
    return [inner] * (len(TUNING_CANDIDATES) * INNER_FOLDS) + [fit]


def _n_cached(clips, conditions, feature_settings, settings, cache_dir) -> int:
    if cache_dir is None:
        return 0
    return sum(
        cached_file(
            c.path,
            condition=cond,
            settings=settings,
            feature_settings=feature_settings,
            cache_dir=cache_dir,
        )
        is not None
        for c in clips
        for cond in conditions
    )


def _did_you_mean(cls: str, corpora: list[Corpus]) -> str:
    """A hint naming left-out labels that look like the class (anger for angry)."""
    near = sorted(
        {label for corpus in corpora for label in corpus.ignored if label[:3] == cls[:3].lower()}
    )
    return f" (left out as not a class: {', '.join(near)})" if near else ""


def _counts(counts: Counter, classes: Sequence[str]) -> str:
    return ", ".join(f"{c} {counts[c]}" for c in classes)


def _speakers(clips: Sequence[Clip]) -> str:
    speakers = sorted({c.speaker for c in clips})
    return ", ".join(speakers[:8]) + (f" and {len(speakers) - 8} more" if len(speakers) > 8 else "")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _n(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"
