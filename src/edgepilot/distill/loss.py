"""The forward and backward passes of ``edgepilot distill train``: the loss of a group of examples.

The prompts are long screens and the answers a few dozen tokens, so on a CPU the passes avoid repeating work
(:func:`_group_loss`; the list is in :mod:`edgepilot.distill.train`). On a GPU a pass costs about the same for
one example as for sixteen, so :func:`_batch_loss` runs whole examples padded into one pass instead.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

from edgepilot.distill.encode import IGNORE, Encoded


def group_by_step(examples: list[Encoded]) -> list[list[Encoded]]:
    """Examples of the same step (``instance/step/kind`` ids) together: they share their prompt's start.

    Args:
        examples: encoded examples, in any order.

    Returns:
        The groups, in the order each group's first example comes in ``examples``.
    """
    groups: dict[str, list[Encoded]] = {}
    for e in examples:
        key = e.id.rsplit("/", 1)[0] if e.id.count("/") >= 2 else e.id
        groups.setdefault(key, []).append(e)
    return list(groups.values())


LONE_SUFFIX = 128
"""Prompt tokens with gradient before a lone example's first answer (no other example shares its prefix)."""


def shared_cut(group: list[Encoded]) -> int:
    """How many leading tokens the group's examples share and none of them has a label in (0: none)."""
    first_label = min(next(i for i, t in enumerate(e.labels) if t != IGNORE) for e in group)
    if len(group) == 1:
        cut = first_label - LONE_SUFFIX
    else:
        ids = [e.input_ids for e in group]
        cut = 0
        while all(cut < len(x) for x in ids) and len({x[cut] for x in ids}) == 1:
            cut += 1
    return max(0, min(cut, first_label - 1))


def group_cut(group: list[Encoded]) -> int:
    """Where a group's examples stop running without gradient from a shared cache (0: no shared part).

    That is :func:`shared_cut`, for a lone example only when it is long enough to have a prompt worth caching.
    """
    return shared_cut(group) if len(group) > 1 or len(group[0].input_ids) > 2 * LONE_SUFFIX else 0


def common_prefix(examples: list[Encoded]) -> list[int]:
    """The token prefix every example starts with, short of any label.

    That is the chat template's start and the system prompt: training caches it once for many steps.
    """
    if not examples:
        return []
    first = examples[0].input_ids
    n = min(min(len(e.input_ids) for e in examples),
            min(next(i for i, t in enumerate(e.labels) if t != IGNORE) for e in examples))
    for e in examples[1:]:
        ids = e.input_ids
        n = next((i for i in range(n) if ids[i] != first[i]), n)
    return first[:n]


def _autocast(model: Any, device: str, torch: Any) -> Any:
    """Compute in the frozen weights' dtype (:func:`frozen_dtype`); the LoRA's weights are float32."""
    dtype = model.get_input_embeddings().weight.dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def _inputs(ids: list[int], states: Any, device: str, torch: Any) -> dict[str, Any]:
    """A forward pass's inputs for the tokens ``ids``: the ids, or ``states`` (the frozen blocks' output for
    those same tokens, :func:`frozen_blocks`) when the model runs only its top blocks."""
    if states is not None:
        return {"inputs_embeds": states.unsqueeze(0)}
    return {"input_ids": torch.tensor([ids], device=device)}


def _prefix_cache(model: Any, ids: list[int], device: str, torch: Any, states: Any = None) -> tuple[int, Any]:
    """``(length, key/value cache)`` of ``ids`` under the adapter as it is now, without gradient (``states``:
    the frozen blocks' output for an example that starts with ``ids``, fed instead of the ids)."""
    feed = _inputs(ids, states[: len(ids)] if states is not None else None, device, torch)
    with torch.no_grad(), _autocast(model, device, torch):
        return len(ids), model(**feed, use_cache=True).past_key_values


@contextlib.contextmanager
def run_blocks(model: Any, start: int, stop: int, *, norm: bool = True) -> Iterator[None]:
    """Make ``model`` run only its transformer blocks ``start:stop``; restored on exit.

    Fed ``inputs_embeds`` = block ``start - 1``'s output, the top blocks compute exactly what they compute
    in the whole model. Each block's cache index is renumbered from 0 meanwhile, so a key/value cache
    holds the running blocks only.

    Args:
        model: the (peft-wrapped or plain) transformers model.
        start: the first block to run.
        stop: one past the last block to run.
        norm: False: leave out the final norm too, so the last hidden state is block ``stop - 1``'s output.
    """
    import torch

    inner = _inner(model)
    config = inner.config
    saved_layers, saved_norm, saved_count = inner.layers, inner.norm, config.num_hidden_layers
    saved_types = getattr(config, "layer_types", None)
    chosen = list(saved_layers)[start:stop]
    saved_idx = [layer.self_attn.layer_idx for layer in chosen]
    try:
        inner.layers = torch.nn.ModuleList(chosen)
        for i, layer in enumerate(chosen):
            layer.self_attn.layer_idx = i
        config.num_hidden_layers = len(chosen)
        if saved_types is not None:
            config.layer_types = list(saved_types)[start:stop]
        if not norm:
            inner.norm = torch.nn.Identity()
        yield
    finally:
        inner.layers, inner.norm, config.num_hidden_layers = saved_layers, saved_norm, saved_count
        if saved_types is not None:
            config.layer_types = saved_types
        for layer, idx in zip(chosen, saved_idx, strict=True):
            layer.self_attn.layer_idx = idx


def _inner(model: Any) -> Any:
    """The transformer under the peft wrapper and the language-model head (its ``layers``, ``norm``)."""
    return model.get_base_model().model if hasattr(model, "get_base_model") else model.model


def frozen_blocks(model: Any, groups: list[list[Encoded]], common: list[int], stop: int, device: str, torch: Any,
                  progress: Callable[[int, int], None] | None = None) -> dict[int, Any]:
    """The output of blocks ``0:stop`` (which carry no adapter) for every token of every example.

    Computed once, they are the same in every epoch, so training runs only the blocks above
    (:func:`run_blocks`). As in training, the system prompt runs once and the prompt a step's examples share
    once per step.

    Args:
        model: the peft model, its adapter on blocks ``stop`` and above only.
        groups: the examples, grouped by step (:func:`group_by_step`).
        common: the tokens every example starts with (:func:`common_prefix`).
        stop: the first adapted block.
        device: the torch device.
        torch: the torch module.
        progress: called with (groups done, groups) after each group.

    Returns:
        ``id(example)`` -> its tokens' states, shape (tokens, hidden).
    """
    inner = _inner(model)
    states: dict[int, Any] = {}

    def run(ids: list[int], cache: Any) -> tuple[Any, Any]:
        out = inner(input_ids=torch.tensor([ids], device=device), past_key_values=cache, use_cache=True)
        return out.last_hidden_state[0], out.past_key_values

    with run_blocks(model, 0, stop, norm=False), torch.no_grad(), _autocast(model, device, torch):
        base = (len(common), *run(common, None)) if common else None
        for n, group in enumerate(groups):
            cut = group_cut(group)
            done, head, cache = 0, None, None
            if base is not None and cut >= base[0]:
                done, head, cache = base[0], base[1], copy.deepcopy(base[2])
            if cut > done:
                part, cache = run(group[0].input_ids[done:cut], cache)
                head = part if head is None else torch.cat([head, part])
                done = cut
            for example in group:
                rest, _ = run(example.input_ids[done:], copy.deepcopy(cache) if cache is not None else None)
                states[id(example)] = rest if head is None else torch.cat([head, rest])
            if progress is not None:
                progress(n + 1, len(groups))
    return states


def chunks(labels: list[int], start: int, window: int | None) -> list[tuple[int, int, bool]]:
    """``(begin, end, with_gradient)`` spans that cover ``labels[start:]`` up to the last label.

    Each answer (a run of labels) runs with gradient together with the
    ``window`` tokens before it (from the previous answer's end at most); the
    tokens between run without. ``window`` None: one span with gradient.
    The logit at position j predicts token j+1, so a span with gradient
    always holds the position before its first label.

    Args:
        labels: an example's labels (``IGNORE`` where no token is predicted).
        start: where the example's own tokens begin (the shared prefix ends).
        window: how many prompt tokens before each answer run with gradient (None: all of them).

    Returns:
        The spans, in order, each ``(begin, end, with_gradient)``.
    """
    labelled = [i for i in range(start + 1, len(labels)) if labels[i] != IGNORE]
    if not labelled:
        return []
    if window is None:
        return [(start, labelled[-1] + 1, True)]
    window = max(1, window)
    spans: list[tuple[int, int, bool]] = []
    pos = start
    i = 0
    while i < len(labelled):
        begin = labelled[i]
        while i + 1 < len(labelled) and labelled[i + 1] == labelled[i] + 1:
            i += 1
        end = labelled[i] + 1
        grad_from = max(begin - window, pos)
        if grad_from > pos:
            spans.append((pos, grad_from, False))
        if spans and spans[-1][2] and spans[-1][1] == grad_from:
            spans[-1] = (spans[-1][0], end, True)  # two answers with no prompt between: one span
        else:
            spans.append((grad_from, end, True))
        pos = end
        i += 1
    return spans


def _batch_loss(model: Any, batch: list[Encoded], trained: int, device: str, torch: Any, *,
                decision_weight: float = 1.0, deciding: list | None = None) -> float:
    """Back-propagate the summed loss / ``trained`` of ``batch``'s examples, run whole in one padded pass
    (padding on the right, masked); returns the summed loss. Logits are computed only where a label is.

    The loss of each example is the one it has alone; the gradient runs through every token. On an H100 a
    pass of 16 examples of 900 tokens (forward and backward, SmolLM2-135M's shape, LoRA on all 30 blocks)
    took 224 ms against 208 ms for one; ``deciding`` and ``decision_weight`` as in :func:`_group_loss`.
    """
    width = max(len(e.input_ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, IGNORE)
    marks = torch.zeros_like(ids, dtype=torch.bool)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        targets[row, :n - 1] = torch.tensor(e.labels[1:n])  # the logit at j predicts token j+1
        if e.deciding:
            marks[row, :n - 1] = torch.tensor(e.deciding[1:n])
    ids, mask, targets, marks = (t.to(device) for t in (ids, mask, targets, marks))
    where = targets != IGNORE
    with _autocast(model, device, torch):
        hidden = _inner(model)(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.get_base_model().lm_head(hidden[where])
    nll = torch.nn.functional.cross_entropy(logits.float(), targets[where], reduction="none")
    return _backward(nll, marks[where], trained, decision_weight, deciding)


def _backward(nll: Any, marks: Any, trained: int, decision_weight: float, deciding: list | None) -> float:
    """Back-propagate the summed ``nll`` (one value per label) / ``trained``, the deciding tokens (``marks``)
    weighing ``decision_weight``; add their loss and count to ``deciding`` (``[sum, count]``); return the
    unweighted sum."""
    weights = 1.0 + (decision_weight - 1.0) * marks.float()
    ((nll * weights).sum() / trained).backward()
    if deciding is not None and bool(marks.any()):
        deciding[0] += nll[marks].sum().item()
        deciding[1] += int(marks.sum().item())
    return nll.sum().item()


def _group_loss(model: Any, group: list[Encoded], trained: int, device: str, torch: Any, *,
                window: int | None = None, prefix: tuple[int, Any] | None = None,
                decision_weight: float = 1.0, deciding: list | None = None,
                states: dict[int, Any] | None = None) -> float:
    """Back-propagate the group's summed loss / ``trained``; returns the summed loss.

    Deciding tokens (:attr:`Encoded.deciding`) weigh ``decision_weight`` in what is back-propagated
    (the returned sum stays unweighted); ``deciding``, a ``[sum, count]`` pair, gathers their loss.

    ``prefix`` is the cache of the tokens every example starts with (``common_prefix``);
    the rest of the prefix the group's examples share runs once on top of it,
    without gradient (its keys and values are computed with the adapter, but
    the adapter is not trained through them); each example's own tokens go on
    from a copy of that cache, in :func:`chunks`. Forward values are those of
    running each example whole, except that ``prefix`` may have been computed
    with the adapter of a few optimizer steps ago (``prefix_refresh``).

    ``states`` (:func:`frozen_blocks`): the model runs only its top blocks (:func:`run_blocks`), fed the
    frozen blocks' output for the tokens instead of the tokens.
    """
    autocast = _autocast(model, device, torch)

    def feed(example: Encoded, begin: int, end: int) -> dict[str, Any]:
        return _inputs(example.input_ids[begin:end], states[id(example)][begin:end] if states is not None else None,
                       device, torch)

    cut = group_cut(group)
    cache = None
    if prefix is not None and cut >= prefix[0]:
        done, cache = prefix
        if cut > done:
            cache = copy.deepcopy(cache)
            with torch.no_grad(), autocast:
                model(**feed(group[0], done, cut), past_key_values=cache, use_cache=True)
    elif cut > 0:
        cache = _prefix_cache(model, group[0].input_ids[:cut], device, torch,
                              states[id(group[0])] if states is not None else None)[1]
    total = 0.0
    for example in group:
        own = copy.deepcopy(cache) if cache is not None else None
        for begin, end, grad in chunks(example.labels, cut, window):
            if not grad:
                with torch.no_grad(), autocast:
                    out = model(**feed(example, begin, end), past_key_values=own, use_cache=True)
                own = out.past_key_values
                continue
            # the logit at span position j predicts token begin+j+1
            targets = torch.tensor(example.labels[begin + 1:end + 1], device=device)
            where = (targets != IGNORE).nonzero(as_tuple=True)[0]
            with autocast:
                out = model(**feed(example, begin, end), past_key_values=own, use_cache=True, logits_to_keep=where)
            own = out.past_key_values
            nll = torch.nn.functional.cross_entropy(out.logits[0].float(), targets[where], reduction="none")
            marks = (torch.tensor(example.deciding[begin + 1:end + 1], device=device)[where]
                     if example.deciding else torch.zeros_like(nll, dtype=torch.bool))
            total += _backward(nll, marks, trained, decision_weight, deciding)
    return total
