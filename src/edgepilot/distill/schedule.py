"""The order in which ``edgepilot distill train`` feeds its examples: epochs, skips, limits and batches.

Pure Python on encoded examples (no torch): the same seed gives the same order, which is what lets a run
resumed with ``--init`` and ``--skip-examples`` go on where an earlier one stopped.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from edgepilot.distill.encode import Encoded
from edgepilot.distill.loss import group_by_step
from edgepilot.errors import ConfigError


@dataclass
class Schedule:
    """The examples in the order they train.

    ``order[i]`` is one forward unit (a step's group, or a padded batch); ``grad_accum`` of them make an
    optimizer step, ``steps`` in all.
    """

    groups: list[list[Encoded]]
    """Every example, grouped as they share a cached prompt (by step, or one each)."""
    order: list[list[Encoded]]
    steps: int


def plan_schedule(examples: list[Encoded], *, seed: int, epochs: float, grad_accum: int, shared_prefix: bool = True,
                  skip_examples: int = 0, max_examples: int | None = None, batch: int = 1) -> Schedule:
    """The seeded order of the examples over ``epochs``, less ``skip_examples``, up to ``max_examples``.

    Args:
        examples: the examples that train.
        seed: seeds the shuffle of each epoch.
        epochs: passes over the examples; a fraction takes the start of the last pass's shuffle.
        grad_accum: forward units per optimizer step.
        shared_prefix: group a step's examples (:func:`~edgepilot.distill.loss.group_by_step`); False: one each.
        skip_examples: leave out the first groups holding this many examples of the order.
        max_examples: keep the first this many examples of what is left (None: all).
        batch: above 1, regroup the examples into padded passes of this many (:mod:`edgepilot.distill.loss`).

    Returns:
        The schedule.

    Raises:
        ConfigError: ``skip_examples`` leaves nothing to train on.
    """
    groups = group_by_step(examples) if shared_prefix else [[e] for e in examples]
    order = _skip(_epochs(groups, seed, epochs), skip_examples)
    if max_examples is not None:
        order = _first(order, max_examples)
    if batch > 1:
        order = _padded_batches(order, batch)
    return Schedule(groups, order, max(1, math.ceil(len(order) / grad_accum)))


def _epochs(groups: list[list[Encoded]], seed: int, epochs: float) -> list[list[Encoded]]:
    """The groups shuffled anew for each epoch; a fractional last epoch takes the start of its shuffle."""
    rng = random.Random(seed)
    order: list[list[Encoded]] = []
    whole = math.floor(epochs)
    for _ in range(whole):
        epoch = groups[:]
        rng.shuffle(epoch)
        order += epoch
    if epochs > whole:
        epoch = groups[:]
        rng.shuffle(epoch)
        order += epoch[: round(len(groups) * (epochs - whole))]
    return order


def _skip(order: list[list[Encoded]], skip: int) -> list[list[Encoded]]:
    """``order`` without its first groups holding ``skip`` examples (whole groups: a group trains together).

    Raises:
        ConfigError: nothing is left.
    """
    if not skip:
        return order
    n = 0
    while order and n < skip:
        n += len(order.pop(0))
    if not order:
        raise ConfigError(f"--skip-examples {skip} leaves no examples to train on")
    return order


def _first(order: list[list[Encoded]], limit: int) -> list[list[Encoded]]:
    """The first ``limit`` examples of ``order``, the last group cut short to fit."""
    kept: list[list[Encoded]] = []
    n = 0
    for g in order:
        if n >= limit:
            break
        kept.append(g[: limit - n])
        n += len(kept[-1])
    return kept


def _padded_batches(order: list[list[Encoded]], batch: int) -> list[list[Encoded]]:
    """Whole examples in ``batch``-sized passes, each padded with others of about its length.

    The seeded order holds across windows of ``8 * batch`` examples; within one, the examples are sorted by
    length, so that little of a pass is padding.
    """
    flat = [e for g in order for e in g]
    pool = 8 * batch
    batches: list[list[Encoded]] = []
    for at in range(0, len(flat), pool):
        by_length = sorted(flat[at:at + pool], key=lambda e: len(e.input_ids))
        batches += [by_length[i:i + batch] for i in range(0, len(by_length), batch)]
    return batches
