"""The stages of the experiment (``finetune_experiment.py`` says what each measures).

Each stage trains what it needs in ``Experiment.out`` (a finished run is not redone) and returns
what it measured.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .guide import guide_loop
from .results import (
    ArmRun,
    Evaluation,
    FineTuning,
    KnnPoint,
    ProbeRow,
    Probes,
    Scratch,
    Strong,
    TimedRun,
    from_json,
)
from .runs import both_domains, dinokit_train, evaluate, knn_curve, teacher_entropy
from .settings import CROPS, GUIDE_LR, GUIDE_OUT_DIM, MODEL, SCRATCH_RECIPE, Experiment
from .supervised import train_supervised

logger = logging.getLogger("finetune_experiment")

# The from-scratch recipe against itself without its KoLeo term, over seeds (the seed-0
# recipe run is the one timed against the guide's loop).
RECIPE_VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "recipe without KoLeo": {"koleo": 0.0},
}

# One change at a time from the scratch recipe (docs/finetuning.md, "Why these settings").
PROBES: dict[str, dict[str, Any]] = {
    "recipe": {},
    "out_dim 2048": {"out_dim": 2048},
    "out_dim 2048, lr 1e-3": {"out_dim": 2048, "lr": 1e-3},
    "teacher temp 0.02": {"teacher_temp": 0.02, "warmup_teacher_temp": 0.02},
    "EMA momentum 0.9": {"momentum": 0.9},
    "no BatchNorm in head": {"use_bn_in_head": False},
    "no lr warm-up": {"warmup_epochs": 0},
    "no KoLeo": {"koleo": 0.0},
    "KoLeo 0.3": {"koleo": 0.3},
}


def scratch_options(exp: Experiment, epochs: int, *, monitor: bool = True) -> dict[str, Any]:
    """``dinokit train`` options of the from-scratch recipe on cifar10-mini (seed 0)."""
    options: dict[str, Any] = {
        "model": MODEL,
        "weights": "none",
        **CROPS,
        "batch_size": exp.batch_size,
        **SCRATCH_RECIPE,
        "epochs": epochs,
        "workers": 1,
        "seed": 0,
    }
    if monitor:
        options.update(eval_train=exp.cifar / "train", eval_val=exp.cifar / "test")
    return options


def stage_scratch(exp: Experiment) -> Scratch:
    """dinokit's recipe from scratch, then the guide's loop for as long (or ``budget_min``)."""
    run = exp.out / "scratch-dinokit"
    seconds = dinokit_train(
        exp.cifar / "train", run, scratch_options(exp, exp.scratch_epochs), exp.threads
    )
    guide = guide_loop(
        exp.cifar / "train",
        exp.cifar / "train",
        exp.cifar / "test",
        exp.out / "scratch-guide",
        budget_s=max(seconds, 60 * exp.budget_min) if exp.budget_min else seconds,
        epochs_for_schedule=exp.scratch_epochs,
        seed=0,
        threads=exp.threads,
        batch_size=exp.batch_size,
    )
    return Scratch(dinokit=TimedRun(seconds, knn_curve(run)), guide=guide)


def stage_seeds(exp: Experiment) -> dict[str, dict[str, list[KnnPoint]]]:
    """The scratch recipe with and without KoLeo, for each seed: kNN curves."""
    curves: dict[str, dict[str, list[KnnPoint]]] = {}
    for name, change in RECIPE_VARIANTS.items():
        for seed in exp.seeds:
            options = scratch_options(exp, exp.scratch_epochs)
            options.update(change, seed=seed)
            if name == "recipe" and seed == 0:
                run = exp.out / "scratch-dinokit"
            else:
                run = exp.out / f"seeds-{name.replace(' ', '-')}-seed{seed}"
            dinokit_train(exp.cifar / "train", run, options, exp.threads)
            curves.setdefault(name, {})[str(seed)] = knn_curve(run)
    return curves


def stage_pretrain(exp: Experiment) -> TimedRun:
    """The "pretrained" model: the scratch recipe for ``pretrain_epochs``."""
    run = exp.out / "pretrain"
    options = scratch_options(exp, exp.pretrain_epochs)
    return TimedRun(dinokit_train(exp.cifar / "train", run, options, exp.threads), knn_curve(run))


def finetune_arms(exp: Experiment, pretrained: Path) -> dict[str, dict[str, Any]]:
    """The ways to train on the new domain, at equal epochs."""
    naive_lr = GUIDE_LR * 256 / exp.ft_batch_size
    return {
        # dinokit's defaults: the run folder brings its head and centre; lr, layer decay,
        # warm-up and head warm-up are left to the fine-tuning defaults.
        "dinokit defaults": {"model": pretrained},
        # The same, with the naive arm's lr (1e-3 at batch 64): which part of the naive
        # arm's change comes from its lr alone, with the head, warm-ups and layer decay kept.
        "dinokit, naive's lr": {"model": pretrained, "lr": naive_lr},
        # What a guide user does: load the backbone under a new random head, the guide's
        # AdamW lr 1e-3 for every layer (dinokit's lr is per 256 images), no warm-ups.
        "naive": {
            "model": pretrained / "teacher.safetensors",
            "lr": naive_lr,
            "layer_decay": 1.0,
            "warmup_epochs": 0,
            "head_warmup_epochs": 0,
            "freeze_last_layer": 0,
            "out_dim": GUIDE_OUT_DIM,
            "momentum": 0.996,
        },
        # From random weights on the new domain with the small-image scratch recipe.
        "from scratch": {"model": MODEL, "weights": "none", **SCRATCH_RECIPE},
    }


def finetune_runs(
    exp: Experiment, arms: dict[str, dict[str, Any]], seeds: tuple[int, ...], prefix: str
) -> dict[str, list[ArmRun]]:
    """Each arm for each seed on imagenette-mini/train, measured on both domains.

    A finished run's measurements are kept in its folder (``evaluation.json``) and reused.
    """
    runs: dict[str, list[ArmRun]] = {}
    for arm, arm_options in arms.items():
        runs[arm] = []
        for seed in seeds:
            options = {**CROPS, "batch_size": exp.ft_batch_size, **arm_options}
            options.update(epochs=exp.ft_epochs, workers=1, seed=seed)
            options.update(eval_train=exp.nette / "train", eval_val=exp.nette / "val")
            run = exp.out / f"{prefix}{arm.replace(' ', '-')}-seed{seed}"
            runs[arm].append(_arm_run(exp, run, options, f"{prefix}{arm} seed {seed}"))
    return runs


def _arm_run(exp: Experiment, run: Path, options: dict[str, Any], name: str) -> ArmRun:
    """One fine-tuning run on imagenette-mini/train (``options``' seed), measured on both
    domains."""
    seconds = dinokit_train(exp.nette / "train", run, options, exp.threads)
    after, cifar_after = _measured(exp, run)
    knn, cifar = 100 * after.knn, 100 * cifar_after.knn
    logger.info("%s: kNN %.1f%% (cifar10-mini %.1f%%)", name, knn, cifar)
    return ArmRun(int(options["seed"]), seconds, after, cifar_after, knn_curve(run))


def _measured(exp: Experiment, run: Path) -> tuple[Evaluation, Evaluation]:
    """:func:`both_domains` of a run, kept in its ``evaluation.json``."""
    saved = run / "evaluation.json"
    if not saved.exists():
        after, cifar_after = both_domains(exp.data, run)
        measured = {"after": asdict(after), "cifar_after": asdict(cifar_after)}
        saved.write_text(json.dumps(measured))
    measured = json.loads(saved.read_text())
    return from_json(Evaluation, measured["after"]), from_json(Evaluation, measured["cifar_after"])


def stage_finetune(exp: Experiment) -> FineTuning:
    """The arms from the pretrained model, over ``seeds``."""
    pretrained = exp.out / "pretrain"
    # The pretraining domain too: what each arm keeps of what the model had learned there.
    before, before_cifar = both_domains(exp.data, pretrained)
    arms = finetune_runs(exp, finetune_arms(exp, pretrained), exp.seeds, "ft-")
    return FineTuning(before, before_cifar, arms)


def _supervised(exp: Experiment) -> tuple[Path, float]:
    """The supervised stand-in for strong features (trained once, then reused) and the
    seconds its training took."""
    weights = exp.out / "supervised" / "backbone.safetensors"
    seconds = train_supervised(
        exp.cifar / "train",
        weights,
        epochs=exp.supervised_epochs,
        seed=0,
        threads=exp.threads,
        batch_size=exp.batch_size,
    )
    return weights, seconds


def stage_strong(exp: Experiment) -> Strong:
    """Fine-tuning arms from the supervised stand-in for strong pretrained features."""
    weights, seconds = _supervised(exp)
    before, before_cifar = both_domains(exp.data, weights)
    naive = finetune_arms(exp, weights.parent)["naive"]
    arms: dict[str, dict[str, Any]] = {
        "dinokit defaults": {"model": weights},
        # Ten times the default lr, everything else kept: can the gentle recipe move strong
        # features towards the new domain in this budget without losing them?
        "dinokit defaults, lr 1e-3": {"model": weights, "lr": 1e-3},
        "naive": {**naive, "model": weights},
    }
    runs = finetune_runs(exp, arms, exp.strong_seeds, "strong-")
    return Strong(before, before_cifar, runs, seconds=seconds, epochs=exp.supervised_epochs)


# Section 3c: each start fine-tuned for the same time budget with the defaults and nothing
# else; from strong features, the from-scratch lr without layer decay beside them (what the
# defaults' gentle values are for).
BUDGET_ARMS: dict[str, dict[str, dict[str, Any]]] = {
    "weak": {"dinokit defaults": {}},
    "strong": {
        "dinokit defaults": {},
        "lr 4e-3, no layer decay": {"lr": 4e-3, "layer_decay": 1.0},
    },
}


def stage_budget(exp: Experiment) -> dict[str, FineTuning]:
    """The weak start (the pretrain run folder: its head and recipe) and the strong one (the
    supervised backbone file: a new head), each fine-tuned on imagenette-mini/train for
    ``ft_budget`` with nothing set but the seed, measured on both domains."""
    strong, _ = _supervised(exp)
    starts = {"weak": exp.out / "pretrain", "strong": strong}
    stages: dict[str, FineTuning] = {}
    for start, model in starts.items():
        before, before_cifar = both_domains(exp.data, model)
        arms: dict[str, list[ArmRun]] = {}
        for arm, change in BUDGET_ARMS[start].items():
            arms[arm] = []
            for seed in exp.seeds:
                options = {"model": model, "budget": exp.ft_budget, "workers": 1, "seed": seed}
                run = exp.out / f"budget-{start}-{arm.replace(' ', '-').replace(',', '')}-{seed}"
                name = f"budget {start}, {arm}, seed {seed}"
                arms[arm].append(_arm_run(exp, run, {**options, **change}, name))
        stages[start] = FineTuning(before, before_cifar, arms)
    return stages


def stage_probes(exp: Experiment) -> Probes:
    """The first ``probe_steps`` of the scratch run with one setting changed at a time."""
    rows: dict[str, ProbeRow] = {}
    for name, change in PROBES.items():
        options = scratch_options(exp, exp.scratch_epochs + 1, monitor=False)
        options.update(change, max_steps=exp.probe_steps)
        run = exp.out / f"probe-{name.replace(' ', '-').replace(',', '')}"
        dinokit_train(exp.cifar / "train", run, options, exp.threads)
        teacher, student = evaluate(
            run, exp.cifar / "train", exp.cifar / "test", branch=["teacher", "student"]
        )
        entropy = teacher_entropy(run)
        rows[name] = ProbeRow(
            teacher=teacher.knn,
            student=student.knn,
            teacher_entropy_last=entropy[-1] if entropy else None,
            teacher_entropy_min=min(entropy) if entropy else None,
            max_entropy=math.log(int(options["out_dim"])),
        )
        logger.info("probe %s: %s", name, rows[name])
    return Probes(exp.probe_steps, rows)


def stage_extras(exp: Experiment) -> dict[str, list[Evaluation]]:
    """Preprocessing modes of the pretrained and the fine-tuned (seed 0) models, and the
    fine-tuned one's teacher against its student."""
    run = exp.out / f"ft-dinokit-defaults-seed{exp.seeds[0]}"
    modes = ["center-crop", "resize", "letterbox"]
    train, val = exp.nette / "train", exp.nette / "val"
    return {
        "pretrained": evaluate(exp.out / "pretrain", train, val, preprocess=modes),
        "fine-tuned": evaluate(run, train, val, preprocess=modes, branch=["teacher", "student"]),
    }


STAGES: dict[str, Callable[[Experiment], Any]] = {
    "scratch": stage_scratch,
    "seeds": stage_seeds,
    "pretrain": stage_pretrain,
    "finetune": stage_finetune,
    "extras": stage_extras,
    "probes": stage_probes,
    "strong": stage_strong,
    "budget": stage_budget,
}
"""Each stage by its ``--stages`` name (also its entry in ``results.json``)."""
