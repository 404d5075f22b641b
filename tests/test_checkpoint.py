"""segnet.runtime.checkpoint: load_model rebuilds the trained network, and every way a checkpoint
can be bad (missing, empty, truncated, corrupt, not segnet's, another architecture, a pickle that
would run code under weights_only=True) is a CheckpointError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segnet.data.classes import VOC_CLASSES
from segnet.models import FCN
from segnet.runtime.checkpoint import CheckpointError, load_model


class Unsafe:
    def __reduce__(self):
        return (print, ("a checkpoint must never run code",))


def damage(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    checkpoint = torch.load(good, weights_only=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped bytes":
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    elif kind == "plain dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "other architecture":
        checkpoint["hyper_parameters"]["backbone"] = "resnet34"
        torch.save(checkpoint, path)
    elif kind == "unsafe pickle":
        checkpoint["callbacks"] = Unsafe()
        torch.save(checkpoint, path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "is an empty file"),
        ("truncated", "not a zip archive"),
        ("flipped bytes", "is corrupt"),
        ("plain dict", "is not a segnet checkpoint \\(hyper_parameters lack num_classes"),
        ("other architecture", "weights do not fit FCN\\(backbone='resnet34'"),
        ("unsafe pickle", "weights_only=True refuses.*Unsupported global"),
    ],
)
def test_load_model_names_the_file_and_the_problem(checkpoint, tmp_path, kind, message):
    path = tmp_path / f"{kind}.ckpt"
    damage(kind, checkpoint, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert str(path) in str(error.value)


def test_load_model_rebuilds_the_trained_network(checkpoint):
    model, names, palette = load_model(checkpoint)
    assert not model.training and names == list(VOC_CLASSES)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert torch.equal(model.score32.weight, state["model.score32.weight"])


# The hyper-parameters SegmentationSystem saved before fcn_from_hparams existed (segnet at
# commit 38d8aa8): the checkpoint format did not change with it.
SAVED_HPARAMS = {
    "num_classes", "backbone", "variant", "pretrained", "weights_path", "trainable_upsample",
    "class_names", "optimizer", "lr", "momentum", "weight_decay", "backbone_lr_mult",
    "poly_power", "warmup_iters", "warmup_factor", "class_weights", "channels_last",
}  # fmt: skip
# Keys added since, each optional when a checkpoint is read (an earlier one lacks them).
ADDED_HPARAMS = {"class_colours", "freeze_backbone"}


def test_checkpoints_keep_their_format_and_one_in_the_earlier_layout_loads(checkpoint, tmp_path):
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    assert set(saved) == SAVED_HPARAMS | ADDED_HPARAMS
    torch.manual_seed(3)
    network = FCN(num_classes=4, backbone="resnet18", variant="fcn16s", trainable_upsample=False)
    hparams = {key: None for key in SAVED_HPARAMS} | {
        "num_classes": 4,
        "backbone": "resnet18",
        "variant": "fcn16s",
        "pretrained": True,  # ignored: the saved weights replace any ImageNet ones
        "trainable_upsample": False,
        "class_names": ["background", "cat", "dog", "car"],
    }
    state = {f"model.{name}": tensor for name, tensor in network.state_dict().items()}
    path = tmp_path / "earlier.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": state, "global_step": 7}, path)
    model, names, palette = load_model(path)
    assert names == hparams["class_names"] and model.variant == "fcn16s"
    for name, tensor in network.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
