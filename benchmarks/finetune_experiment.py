"""Does fine-tuning help? The measurements behind ``docs/finetuning.md``.

Stages (each keeps its results in ``--out``; a finished stage is not redone, so an interrupted
run continues where it stopped):

``scratch``
    DINO from random weights on ``cifar10-mini/train`` (5,000 CIFAR-10 images, labels unused):
    ``dinokit train`` with the small-image recipe below, then the loop the usual guide builds
    with lightly (same ViT, crops and batch) for the same wall-clock time. Teacher kNN top-1
    on ``cifar10-mini/test`` after each epoch.
``seeds``
    The scratch recipe with and without its KoLeo term, for each of ``--seeds`` (same
    budget; the seed-0 recipe run is the ``scratch`` one).
``pretrain``
    The "pretrained" model: the same recipe for a longer, fixed budget
    (``--pretrain-epochs``) on ``cifar10-mini/train``.
``finetune``
    The pretrained model above is the starting point. For each seed, on
    ``imagenette-mini/train`` (1,000 photos, labels unused), at equal epochs: dinokit's
    fine-tuning defaults, the same at the naive arm's lr, naive continued training (one lr
    for every layer, random head, no warm-up), and training from scratch. kNN with
    ``dinokit evaluate`` on ``imagenette-mini/val`` before and after, and on
    ``cifar10-mini/test`` after (what the pretraining domain kept).
``strong``
    The same question from strong features: a stand-in trained with labels on
    ``cifar10-mini/train`` (``--supervised-epochs``), then dinokit's defaults and naive
    continued training on ``imagenette-mini/train`` for each of ``--strong-seeds``.
``extras``
    The fine-tuned model of seed 0: preprocessing modes and teacher vs student.
``budget``
    Both starts fine-tuned on ``imagenette-mini/train`` for ``--ft-budget`` (15 minutes) with
    nothing set but the seed: the pretrain run folder (its head and recipe) and the
    supervised backbone file (a new head); from the strong start, also the from-scratch lr
    without layer decay. kNN on both domains after each run.
``probes``
    Why the recipe is what it is: the first ``--probe-steps`` steps of the scratch run (its
    schedules unchanged) with one setting changed at a time; teacher and student kNN.
``report``
    ``results.json``, ``results.md`` (the tables) and ``curves.png``.

    pip install -e '.[bench]'        # lightly, for the guide's loop
    python benchmarks/finetune_experiment.py --out runs/finetune-experiment

Everything runs on the CPU at 32 px (a 192-d, 6-block ViT with 4 px patches); the defaults
take about 6 hours on 2 cores (the ``budget`` stage's runs need the CPU to themselves: their
length is measured time). ``--smoke`` runs every stage for a step or two, on any small
``--data`` folder with the same layout, to check that the experiment runs end to end.

The parts live in ``benchmarks/finetune/``: the stages, the runs they start, the guide's loop,
the supervised stand-in, the typed results, the report and the plot.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from finetune.plot import plot_results
from finetune.report import render
from finetune.results import Results
from finetune.settings import SMOKE, Experiment
from finetune.stages import STAGES

DEFAULTS = Experiment()


def parse_args(argv: Sequence[str] | None = None) -> tuple[Experiment, list[str]]:
    """The experiment and the stages the command line asks for (``--smoke``: tiny sizes)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULTS.out)
    parser.add_argument("--data", type=Path, default=DEFAULTS.data)
    parser.add_argument(
        "--stages", default="scratch,seeds,pretrain,finetune,strong,extras,budget,report"
    )
    parser.add_argument("--scratch-epochs", type=int, default=DEFAULTS.scratch_epochs)
    parser.add_argument(
        "--budget-min",
        type=float,
        default=DEFAULTS.budget_min,
        help="the guide's loop runs this long, or as long as the dinokit run if longer",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=DEFAULTS.pretrain_epochs)
    parser.add_argument("--ft-epochs", type=int, default=DEFAULTS.ft_epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULTS.seeds))
    parser.add_argument("--threads", type=int, default=DEFAULTS.threads)
    parser.add_argument("--probe-steps", type=int, default=DEFAULTS.probe_steps)
    parser.add_argument("--supervised-epochs", type=int, default=DEFAULTS.supervised_epochs)
    parser.add_argument("--strong-seeds", type=int, nargs="+", default=list(DEFAULTS.strong_seeds))
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="batch of the cifar10-mini runs; fine-tuning runs use half",
    )
    parser.add_argument("--ft-budget", default=DEFAULTS.ft_budget, help="budget stage: 15m")
    parser.add_argument(
        "--smoke", action="store_true", help="every stage for a step or two (tiny sizes)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(Experiment)}
    values.update(seeds=tuple(args.seeds), strong_seeds=tuple(args.strong_seeds))
    return Experiment(**values), args.stages.split(",")


def main(argv: Sequence[str] | None = None) -> None:
    exp, stages = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    exp.out.mkdir(parents=True, exist_ok=True)
    results_file = exp.out / "results.json"
    results = Results.load(results_file)
    for name in stages:
        if name == "report":
            report = render(results, exp)
            (exp.out / "results.md").write_text(report)
            print(report)
            plot_results(results, exp.out / "curves.png")
            continue
        setattr(results, name, STAGES[name](exp))
        results.save(results_file)


if __name__ == "__main__":
    main()
