"""Start an FCN from another FCN's weights: every tensor of equal name and shape, and the
slices of the classes the two share, matched by name.

A class-specific tensor has one dimension indexed by class: the score layers' weights
(num_classes, C, 1, 1) and biases (num_classes,), and the depthwise upsampling filters
(num_classes, 1, k, k). Which tensors those are is read from the model's structure
(:func:`class_dimensions`), never guessed from sizes: a trunk's channel count may equal the
class count. Everything not copied keeps the value the target model was built with, so a
model built with the run's seed and then transferred differs from a fresh one only in what
was copied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from segnet.layers.upsample import BilinearUpsample
from segnet.models.fcn import FCN


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did, by state-dict key (without the ``model.`` prefix).

    Attributes:
        copied: tensors copied whole (equal name and shape).
        sliced: class-specific tensors whose shared classes' slices were copied.
        initialised: tensors left as the new model built them (absent from the source, or of
            another shape there), with the reason.
        dropped: source tensors the new model has no place for (e.g. FCN-8s skips into 32s).
        shared_classes: class names in both, in the new model's order.
        new_classes: the new model's classes the source lacks (initialised as new).
        dropped_classes: the source's classes the new model lacks.
    """

    copied: list[str] = field(default_factory=list)
    sliced: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    shared_classes: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    dropped_classes: list[str] = field(default_factory=list)

    def table(self, whole: bool = True) -> str:
        """A plain-text table, one line per tensor (``whole=False``: the tensors copied whole
        counted per top-level module instead, e.g. ``backbone``), then the classes."""
        if whole:
            rows = [(key, "copied", "") for key in self.copied]
        else:
            modules = Counter(key.split(".")[0] for key in self.copied)
            rows = [(f"{name}.*", f"{n} tensors copied", "") for name, n in modules.items()]
        rows += [(key, "shared classes copied", "other classes as new") for key in self.sliced]
        rows += [(key, "initialised as new", why) for key, why in self.initialised.items()]
        rows += [(key, "dropped", "not in the new model") for key in self.dropped]
        width = max(len(key) for key, _, _ in rows)
        lines = [f"{'tensor':<{width}}  what", f"{'-' * width}  ----"]
        lines += [
            f"{key:<{width}}  {what}" + (f" ({why})" if why else "") for key, what, why in rows
        ]
        lines += [
            "",
            f"classes carried over ({len(self.shared_classes)}): {_names(self.shared_classes)}",
            f"new classes, initialised as new ({len(self.new_classes)}): "
            f"{_names(self.new_classes)}",
            f"source classes dropped ({len(self.dropped_classes)}): {_names(self.dropped_classes)}",
        ]
        return "\n".join(lines)


def class_dimensions(model: FCN) -> dict[str, int]:
    """State-dict key -> the dimension indexed by class, for every class-specific tensor of
    ``model``: the head's convolutions (score layers: weight and bias, dim 0) and its
    depthwise upsampling filters (weight, dim 0). The trunk has none."""
    dims: dict[str, int] = {}
    for name, module in model.named_modules():
        if name == "backbone" or name.startswith("backbone."):
            continue
        if isinstance(module, nn.Conv2d) and module.out_channels == model.num_classes:
            dims[f"{name}.weight"] = 0
            if module.bias is not None:
                dims[f"{name}.bias"] = 0
        elif isinstance(module, BilinearUpsample):
            dims[f"{name}.weight"] = 0
    return dims


def transfer_weights(
    model: FCN,
    source: Mapping[str, Tensor],
    source_classes: Sequence[str],
    model_classes: Sequence[str],
) -> TransferReport:
    """Copy into ``model`` (in place) what ``source`` (an FCN state dict) has for it.

    Tensors of equal name and shape are copied whole, except class-specific ones
    (:func:`class_dimensions`), of which only the slices of classes named in both
    ``source_classes`` and ``model_classes`` are copied, matched by name: class ``dog`` at
    index 12 in the source fills index 1 of the model if that is where ``dog`` is there. A
    class-specific tensor is sliced only if it has the same shape as the source's apart from
    the class dimension. Everything else keeps the model's own initial values.

    Raises:
        ValueError: the class-name lists do not match the two class dimensions, or repeat a
            name (a name match would be ambiguous).
    """
    dims = class_dimensions(model)
    for names, count, whose in (
        (source_classes, _source_class_count(source), "source"),
        (model_classes, model.num_classes, "model"),
    ):
        if count is not None and len(names) != count:
            raise ValueError(f"{len(names)} {whose} class names for {count} classes")
        if len(set(names)) != len(names):
            raise ValueError(f"the {whose} class names repeat a name: {list(names)}")
    source_index = {name: i for i, name in enumerate(source_classes)}
    pairs = [
        (i, source_index[name]) for i, name in enumerate(model_classes) if name in source_index
    ]
    report = TransferReport(
        shared_classes=[model_classes[i] for i, _ in pairs],
        new_classes=[name for name in model_classes if name not in source_index],
        dropped_classes=[name for name in source_classes if name not in set(model_classes)],
    )
    target = model.state_dict()
    with torch.no_grad():
        for key, tensor in target.items():
            if key not in source:
                report.initialised[key] = "not in the source"
                continue
            value = source[key]
            if key in dims:
                if not _same_but_classes(tensor, value, dims[key]):
                    report.initialised[key] = f"source shape {tuple(value.shape)}"
                    continue
                for new, old in pairs:
                    tensor.select(dims[key], new).copy_(value.select(dims[key], old))
                report.sliced.append(key)
            elif tensor.shape == value.shape:
                tensor.copy_(value)
                report.copied.append(key)
            else:
                report.initialised[key] = f"source shape {tuple(value.shape)}"
    report.dropped = [key for key in source if key not in target]
    return report


def _source_class_count(source: Mapping[str, Tensor]) -> int | None:
    """The source's class count: the output channels of its final score layer (present in
    every variant)."""
    weight = source.get("score32.weight")
    return None if weight is None else int(weight.shape[0])


def _same_but_classes(ours: Tensor, theirs: Tensor, dim: int) -> bool:
    if ours.dim() != theirs.dim():
        return False
    return all(
        a == b for d, (a, b) in enumerate(zip(ours.shape, theirs.shape, strict=True)) if d != dim
    )


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"
