"""``callsort train`` and ``callsort evaluate``: their options, and the plain functions
that build the training configuration and extract the features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from callsort.cli.labelling import use_encoder_dir
from callsort.errors import UsageError
from callsort.settings import ANALYSIS_SAMPLE_RATE, FAST_SAMPLE_RATE

# options train and evaluate share
ArchiveStandardisation = Annotated[
    bool,
    typer.Option(
        "--archive-standardisation",
        help="Standardise each corpus over its own clips, and each archive labelled "
        "over its own recordings (ACCURACY.md: helps across corpora, hurts on calm "
        "archives; not the shipped models).",
    ),
]
Jobs = Annotated[int, typer.Option("--jobs", "-j", help="Processes; 0: all cores.")]
Seed = Annotated[
    int,
    typer.Option(
        help="Seed of LightGBM and of the pseudo-calls; another seed shows how far a "
        "figure moves by chance."
    ),
]
Cache = Annotated[Path | None, typer.Option(help="Feature cache folder.")]


def train(
    data_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Corpus folders (RAVDESS layout, or with labels.csv), each with its own speakers."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    fast: Annotated[
        bool,
        typer.Option("--fast", help="The fast model: hand-made features only, no encoder."),
    ] = False,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate",
            help="Hz the model hears (labelling decodes to it): 16000 for the default model; "
            "the fast one hears 8000 unless told otherwise (4000 to 16000).",
            show_default=False,
        ),
    ] = None,
    classes: Annotated[str, typer.Option(help="Comma-separated classes.")] = "angry,calm,happy,sad",
    holdout_speakers: Annotated[
        str, typer.Option(help="Speakers left out of the final model, e.g. 23,24.")
    ] = "",
    calm_from_neutral: Annotated[
        bool, typer.Option(help="Also train the calm class on RAVDESS neutral clips.")
    ] = False,
    no_telephone: Annotated[
        bool, typer.Option("--no-telephone", help="Train without telephone-degraded copies.")
    ] = False,
    no_channel_normalisation: Annotated[
        bool,
        typer.Option(
            "--no-channel-normalisation",
            help="Raw features only, not also normalised within each channel.",
        ),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Choose LightGBM settings and feature selection by a search inside the "
            "training speakers (nested in the evaluation; about 30x slower).",
        ),
    ] = False,
    archive_standardisation: ArchiveStandardisation = False,
    jobs: Jobs = 0,
    cache: Cache = None,
    licence: Annotated[str | None, typer.Option(help="Licence note for the card.")] = None,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(envvar="CALLSORT_ENCODER_DIR", help="Your own copy of Whisper base."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the card's figures here.")
    ] = None,
    no_evaluate: Annotated[
        bool,
        typer.Option(
            "--no-evaluate",
            help="Fit only the final model, without the speaker-independent protocols "
            "(one fit instead of one per fold, plus one): the card says it was not "
            "evaluated and its probabilities are not calibrated (temperature 1).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Check the corpora, show the plan, and stop."),
    ] = False,
    seed: Seed = 0,
) -> None:
    """Train a model, cross-validate it by speaker, and write it with its card.

    The plan (clips per corpus and class, audio conditions, protocols and folds, model
    fits, an estimate of the time) is shown before anything is computed.

    Example (the shipped models: scripts/train_shipped_models.sh):
    [bold]callsort train ../shared/datasets/ravdess-speech-16k ../shared/datasets/nemo-speech-16k --out callsort/models/default --holdout-speakers 23,24[/bold]
    """
    from callsort.model.folder import save_model
    from callsort.run.progress import print_metrics, results
    from callsort.training import train as training
    from callsort.training.corpora import default_licence

    config = training_config(
        classes,
        holdout_speakers,
        calm_from_neutral,
        no_telephone,
        no_channel_normalisation,
        tune=tune,
        archive_standardisation=archive_standardisation,
        seed=seed,
    )
    use_encoder_dir(encoder_dir)
    n_jobs = resolve_jobs(jobs)
    features = feature_settings(fast=fast, sample_rate=sample_rate)
    plan = make_plan(data_dirs, config, n_jobs, cache, features=features, evaluate=not no_evaluate)
    if dry_run:
        return
    run = extract_features(data_dirs, plan, config, n_jobs, cache, features=features)
    if no_evaluate:
        metrics = training.not_evaluated()
    else:
        metrics = training.corpus_protocols(run, config, jobs=n_jobs, on_fold=print_fold)
    classifier, card = training.train_model(
        run,
        config,
        data_dir=data_dirs,
        metrics=metrics,
        jobs=n_jobs,
        licence=licence or default_licence(data_dirs),
    )
    save_model(classifier, card, out)
    if json_out:
        import json

        json_out.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    if no_evaluate:
        results.print("not evaluated (--no-evaluate): callsort evaluate measures the figures")
    else:
        print_metrics(metrics, classes=config.classes)
    results.print(f"model {card.version} written to {out}")


def evaluate(
    data_dirs: Annotated[
        list[Path],
        typer.Argument(help="Corpus folders (RAVDESS layout, or with labels.csv)."),
    ],
    fast: Annotated[
        bool, typer.Option("--fast", help="Hand-made features only, no encoder.")
    ] = False,
    classes: Annotated[str, typer.Option(help="Comma-separated classes.")] = "angry,calm,happy,sad",
    calm_from_neutral: Annotated[bool, typer.Option(help="Calm also from neutral clips.")] = False,
    no_telephone: Annotated[
        bool, typer.Option("--no-telephone", help="Train without telephone copies.")
    ] = False,
    no_channel_normalisation: Annotated[
        bool, typer.Option("--no-channel-normalisation", help="Raw features only.")
    ] = False,
    tune: Annotated[
        bool, typer.Option("--tune", help="Nested search of LightGBM settings (slow).")
    ] = False,
    archive_standardisation: ArchiveStandardisation = False,
    jobs: Jobs = 0,
    cache: Cache = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write figures here.")
    ] = None,
    check_card: Annotated[
        Path | None,
        typer.Option(help="Exit 1 unless the figures match this model folder's card."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            help="Largest accepted difference of accuracy and macro-F1 with --check-card "
            "(0.01: about two of RAVDESS's 768 clips labelled otherwise; the features, "
            "encoder included, are the same on every CPU path measured)."
        ),
    ] = 0.01,
    headline_only: Annotated[
        bool,
        typer.Option(
            "--headline-only",
            help="Only the first corpus's speaker folds, clean and mu-law telephone (the "
            "figures --check-card compares).",
        ),
    ] = False,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(envvar="CALLSORT_ENCODER_DIR", help="Your own copy of Whisper base."),
    ] = None,
    seed: Seed = 0,
) -> None:
    """Run the speaker-independent protocol (6 folds by speaker) and print the figures.

    Example: [bold]callsort evaluate ../shared/datasets/ravdess-speech-16k[/bold]
    """
    import json

    from callsort.run.progress import print_metrics, results
    from callsort.training import train as training

    config = training_config(
        classes,
        "",
        calm_from_neutral,
        no_telephone,
        no_channel_normalisation,
        tune=tune,
        archive_standardisation=archive_standardisation,
        seed=seed,
    )
    expected, settings, features = None, None, feature_settings(fast=fast)
    if check_card is not None:  # before hours of work: a card without figures is refused
        expected, settings, features = card_to_check(check_card, fast=fast)
    use_encoder_dir(encoder_dir)
    n_jobs = resolve_jobs(jobs)
    plan = make_plan(
        data_dirs,
        config,
        n_jobs,
        cache,
        features=features,
        final=False,
        headline_only=headline_only,
        settings=settings,
    )
    run = extract_features(
        data_dirs, plan, config, n_jobs, cache, features=features, settings=settings
    )
    metrics = training.corpus_protocols(
        run,
        config,
        jobs=n_jobs,
        headline_only=headline_only,
        on_fold=print_fold,
    )
    print_metrics(metrics, classes=config.classes)
    if json_out:
        json_out.write_text(json.dumps(metrics, indent=2) + "\n")
    if expected is not None:
        from callsort.training.metrics import metric_differences

        differences = metric_differences(expected, metrics, tolerance=tolerance)
        for line in differences:
            results.print(f"[red]{line}[/red]")
        if differences:
            raise typer.Exit(1)
        results.print(f"figures match the card in {check_card} (tolerance {tolerance})")


def card_to_check(folder: Path, *, fast: bool):
    """The figures of the model card in ``folder``, the analysis settings its model was
    trained with: its segmentation as the card records it (a setting added to callsort
    since takes the value callsort used before it, not today's default), so the protocol
    runs on the same segments as when the card was written; and its feature settings
    (the recipe ``fast`` names, at the card's sample rate)."""
    from callsort.model.folder import load_model
    from callsort.settings import AnalysisSettings

    model = load_model(folder)
    expected = model.card.metrics
    if expected.get("evaluated") is False:
        raise UsageError(
            f"{folder} was trained with --no-evaluate: its card has no figures to check"
        )
    card_fast = model.feature_settings.encoder is None
    if card_fast != fast:
        kind, flag = ("fast", "with") if card_fast else ("default", "without")
        raise UsageError(f"{folder} holds a {kind} model: check its card {flag} --fast")
    rate = model.feature_settings.sample_rate
    if model.feature_settings != feature_settings(fast=fast, sample_rate=rate):
        raise UsageError(
            f"{folder} was trained with features this callsort does not compute "
            f"({model.feature_settings}): its card cannot be checked"
        )
    segments = replace(AnalysisSettings(), segmentation=model.segmentation_settings)
    return expected, segments, model.feature_settings


def training_config(
    classes: str,
    holdout: str,
    calm_from_neutral: bool,
    no_telephone: bool,
    no_channel_normalisation: bool = False,
    *,
    tune: bool = False,
    archive_standardisation: bool = False,
    seed: int = 0,
):
    """The :class:`~callsort.training.train.TrainingConfig` of the command's options."""
    from callsort.training.train import TrainingConfig

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise UsageError("--classes takes at least two different class names")
    conditions = TrainingConfig().train_conditions
    if no_telephone:
        conditions = tuple(c for c in conditions if c != "telephone")
    return TrainingConfig(
        classes=names,
        train_conditions=conditions,
        channel_normalisation=not no_channel_normalisation,
        calm_from_neutral=calm_from_neutral,
        tune=tune,
        archive_standardisation=archive_standardisation,
        holdout_speakers=tuple(s.strip() for s in holdout.split(",") if s.strip()),
        seed=seed,
    )


def resolve_jobs(jobs: int) -> int:
    """``--jobs``, where 0 means every core this process may use."""
    from callsort.run.options import default_jobs

    return jobs or default_jobs()


def make_plan(
    data_dirs,
    config,
    jobs: int,
    cache,
    *,
    features,
    evaluate: bool = True,
    final: bool = True,
    headline_only: bool = False,
    settings=None,
):
    """Read and check the corpora, and show the plan (warnings in yellow) before the run;
    ``features``: the feature settings (:func:`feature_settings`); ``settings``: the
    analysis settings (default ``AnalysisSettings()``)."""
    from callsort.run.progress import console
    from callsort.training import train as training

    plan = training.plan_training(
        data_dirs,
        config,
        evaluate=evaluate,
        final=final,
        jobs=jobs,
        cache_dir=cache or training.default_cache_dir(),
        feature_settings=features,
        settings=settings,
        headline_only=headline_only,
        codecs=not headline_only,
    )
    for line in plan.describe():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for warning in plan.warnings:
        console.print(
            f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False, soft_wrap=True
        )
    return plan


DEFAULT_ENCODER_LAYERS = 4
"""The default model's encoder depth: 1.45x faster than all six layers, and no weaker on
RAVDESS's folds in a linear probe (benchmarks/results/encoder-depth-probe.json)."""


FAST_HOP_S = 0.02
"""The fast model's hop: twice the default's 10 ms, half the frames to transform and
summarise, for about a point of mean macro-F1 (benchmarks/ACCURACY.md, "The fast model at
8 kHz")."""


def feature_settings(*, fast: bool, sample_rate: int | None = None):
    """The features of the default model (16 kHz, with the encoder), or of the fast one:
    the hand-made features alone at ``sample_rate`` (:data:`FAST_SAMPLE_RATE` unless
    given), over the default's 32 ms windows every :data:`FAST_HOP_S`, mel bands and
    spectral measures up to Nyquist, as many contrast octaves as fit below it. What is
    counted in frames keeps its length in seconds: deltas over +-40 ms, the level
    smoothed over 60 ms (the default's 50 ms, rounded up to whole frames), a pitch
    value every 20 ms."""
    from callsort.features.encoder import WHISPER_BASE
    from callsort.settings import FeatureSettings

    if not fast:
        if sample_rate not in (None, ANALYSIS_SAMPLE_RATE):
            raise UsageError(f"the default model's encoder hears {ANALYSIS_SAMPLE_RATE} Hz only")
        return FeatureSettings(encoder=WHISPER_BASE, encoder_layers=DEFAULT_ENCODER_LAYERS)
    rate = FAST_SAMPLE_RATE if sample_rate is None else sample_rate
    if not 4000 <= rate <= ANALYSIS_SAMPLE_RATE:
        raise UsageError(f"--sample-rate {rate}: 4000 to 16000 Hz")
    wide = FeatureSettings(encoder=None)
    bands = wide.n_contrast_bands
    while wide.contrast_fmin_hz * 2**bands >= rate / 2:
        bands -= 1
    return replace(
        wide,
        sample_rate=rate,
        n_fft=round(wide.n_fft * rate / ANALYSIS_SAMPLE_RATE),
        hop_length=round(FAST_HOP_S * rate),
        fmax_hz=min(wide.fmax_hz, rate / 2),
        n_contrast_bands=bands,
        delta_width=5,
        level_smooth_frames=3,
        pitch_every_frames=1,
    )


def extract_features(data_dirs, plan, config, jobs, cache, *, features, settings=None):
    """The features (settings ``features``) of every clip of the plan under its
    conditions, with a progress bar."""
    from callsort.run.progress import clip_progress
    from callsort.training import train as training

    with clip_progress(total=plan.n_features) as advance:
        return training.extract(
            data_dirs,
            config,
            jobs=jobs,
            cache_dir=cache or training.default_cache_dir(),
            on_done=advance,
            conditions=plan.conditions,
            feature_settings=features,
            clips=plan.clips,
            settings=settings,
        )


def print_fold(protocol: str, k: int, report: dict) -> None:
    """One line per cross-validation fold as it is done."""
    from callsort.run.progress import results
    from callsort.training.train import CONDITIONS

    results.print(
        f"{protocol}, fold {k} ({len(report['test_speakers'])} test speakers): "
        + ", ".join(f"{c} macro-F1 {report[c]['macro_f1']:.3f}" for c in CONDITIONS)
    )
