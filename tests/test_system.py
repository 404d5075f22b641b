"""SegmentationSystem: loss, metrics, schedule, checkpoint contents, and that it learns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import quiet_trainer
from torch.utils.data import DataLoader, TensorDataset

from segnet.data.datamodule import whole_image_collate
from segnet.data.transforms import pad_collate
from segnet.metrics import confusion_scores
from segnet.models import FCN
from segnet.predict.predictor import Predictor
from segnet.training.system import SegmentationSystem

NAMES = ["background", "square", "disc"]
MODEL_KEYS = (
    "num_classes",
    "backbone",
    "variant",
    "pretrained",
    "weights_path",
    "trainable_upsample",
)


def small_system(**kwargs) -> SegmentationSystem:
    args = {"num_classes": 3, "class_names": NAMES, "backbone": "resnet18", "variant": "fcn8s"}
    return SegmentationSystem(**{**args, **kwargs})


def shapes_batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a bright square (class 1) and a dark disc (class 2) on grey, 255 borders.

    Returns images (n, 3, size, size) float and masks (n, size, size) int64.
    """
    gen = torch.Generator().manual_seed(0)
    side, radius = size // 4, size // 8
    masks = torch.zeros(n, size, size, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        y, x = torch.randint(2, size // 2 - side, (2,), generator=gen).tolist()
        masks[i, y : y + side, x : x + side] = 1
        cy, cx = torch.randint(size // 2 + radius, size - radius, (2,), generator=gen).tolist()
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = 2
    colours = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.5, -1.0], [-2.0, -1.5, 1.0]])
    images = colours[masks].permute(0, 3, 1, 2) + 0.1 * torch.randn(n, 3, size, size, generator=gen)
    masks[:, :, :2] = 255
    return images, masks


def loader(images, masks, batch_size=2) -> DataLoader:
    return DataLoader(TensorDataset(images, masks), batch_size=batch_size)


def test_loss_ignores_255_and_applies_class_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0] = 255
    valid = masks != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], masks[valid])
    assert small_system().loss(logits, masks) == pytest.approx(expected.item(), rel=1e-5)

    weights = [0.2, 1.0, 3.0]
    per_pixel = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], masks[valid], reduction="none")
    w = torch.tensor(weights)[masks[valid]]
    weighted = small_system(class_weights=weights).loss(logits, masks)
    assert weighted == pytest.approx(((w * per_pixel).sum() / w.sum()).item(), rel=1e-5)


def test_poly_schedule_with_warmup_and_backbone_multiplier():
    system = small_system(lr=0.1, backbone_lr_mult=0.1, poly_power=0.9, warmup_iters=10)
    system.trainer = SimpleNamespace(estimated_stepping_batches=100)
    config = system.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["name"] for g in optimizer.param_groups] == ["backbone", "head"]
    seen = {}
    for step in range(100):
        seen[step] = [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    assert seen[0][1] == pytest.approx(0.1 * 0.001)
    assert seen[5][1] == pytest.approx(0.1 * (1 - 5 / 100) ** 0.9 * (0.001 + 0.999 * 5 / 10))
    assert seen[50][1] == pytest.approx(0.1 * 0.5**0.9)
    assert seen[50][0] == pytest.approx(0.01 * 0.5**0.9)
    assert seen[99][1] == pytest.approx(0.1 * 0.01**0.9)


def test_a_resumed_longer_run_starts_at_its_own_schedules_lr_not_the_old_end():
    old = small_system(lr=0.1, poly_power=1.0)
    old.trainer = SimpleNamespace(estimated_stepping_batches=4)
    optimizer, scheduler = _optimizer_and_scheduler(old)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[1]["lr"] == 0.0  # the end of a 4-step schedule

    resumed = small_system(lr=0.1, poly_power=1.0)
    resumed.trainer = SimpleNamespace(estimated_stepping_batches=8)  # max_steps raised to 8
    new_optimizer, new_scheduler = _optimizer_and_scheduler(resumed)
    new_optimizer.load_state_dict(optimizer.state_dict())  # what Lightning's restore does
    new_scheduler.load_state_dict(scheduler.state_dict())
    resumed.trainer.lr_scheduler_configs = [SimpleNamespace(scheduler=new_scheduler)]
    resumed.on_train_start()
    assert new_optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * (1 - 4 / 8))


def _optimizer_and_scheduler(system):
    config = system.configure_optimizers()
    return config["optimizer"], config["lr_scheduler"]["scheduler"]


def test_adamw_and_infinite_schedule_rejected():
    system = small_system(optimizer="adamw", lr=1e-3, weight_decay=0.01)
    system.trainer = SimpleNamespace(estimated_stepping_batches=10)
    assert isinstance(system.configure_optimizers()["optimizer"], torch.optim.AdamW)
    system.trainer = SimpleNamespace(estimated_stepping_batches=float("inf"))
    with pytest.raises(ValueError, match="max_epochs or trainer.max_steps"):
        system.configure_optimizers()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"class_names": ["a", "b"]}, "2 class_names given for num_classes=3"),
        ({"class_weights": [1.0]}, "1 class_weights given for num_classes=3"),
        ({"backbone": "alexnet"}, "unknown backbone 'alexnet'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_system(**kwargs)


def test_validation_metrics_and_checkpoint_contents(tmp_path):
    """Logged val metrics equal confusion_scores of the predictions; the checkpoint is plain."""
    torch.manual_seed(0)
    images, masks = shapes_batch(n=4)
    system = small_system(backbone="mobilenet_v3_large", variant="fcn16s", channels_last=True)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=2, num_sanity_val_steps=0)
    trainer.fit(system, loader(images, masks), loader(images, masks))

    system.eval()
    with torch.no_grad():
        preds = torch.cat([system.predict_step(batch, 0) for batch in loader(images, masks)])
    assert preds.shape == (4, 64, 64) and preds.dtype == torch.long
    valid = masks != 255
    confmat = torch.zeros(3, 3, dtype=torch.long)
    confmat.index_put_(
        (masks[valid], preds[valid]),
        torch.ones(int(valid.sum()), dtype=torch.long),
        accumulate=True,
    )
    expected = confusion_scores(confmat, NAMES)
    for name in ("pixel_acc", "mean_acc", "miou", "fw_iou"):
        assert trainer.callback_metrics[f"val/{name}"].item() == pytest.approx(
            expected[name], abs=1e-6
        )
    assert system.val_scores["confmat"] == confmat.tolist()

    path = tmp_path / "system.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["class_names"] == NAMES and type(hparams["class_names"]) is list
    assert ckpt["val_metrics"]["miou"] == pytest.approx(expected["miou"])
    assert ckpt["global_step"] == 2
    assert all(key.startswith("model.") for key in ckpt["state_dict"])
    model = FCN(**{key: hparams[key] for key in MODEL_KEYS})
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images).argmax(dim=1), preds)


def test_overfits_one_batch():
    """The model and loss learn: loss falls and the batch mIoU (train metric) reaches 0.9."""
    torch.manual_seed(0)
    images, masks = shapes_batch(n=2, size=64)
    system = small_system(optimizer="adamw", lr=0.01, weight_decay=0.0, poly_power=0.0)
    with torch.no_grad():
        initial_loss = system.loss(system(images), masks).item()
    trainer = quiet_trainer(max_epochs=40, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(system, loader(images, masks))

    # Both are the last epoch's, i.e. the last step's: one batch per epoch.
    assert trainer.callback_metrics["train/loss"].item() < initial_loss / 10
    assert trainer.callback_metrics["train/miou"].item() >= 0.9


def test_validation_predicts_each_image_alone_at_its_own_size():
    """Lists of images of different sizes (the data module's validation batches) give the
    matrix of each image predicted alone, whatever shares its batch, and the loss over all of
    their labelled pixels; padding the small image to the large one's size would change it."""
    torch.manual_seed(0)
    # The FCN itself pads 40x52 to 64x64; only a larger neighbour (96x96) pads it further.
    images, masks = shapes_batch(n=2, size=96)
    items = [(images[0, :, :40, :52], masks[0, :40, :52]), (images[1], masks[1])]
    system = small_system()
    for layer in (system.model.score32, system.model.score16, system.model.score8):
        torch.nn.init.normal_(layer.weight, std=0.5)  # zero-initialised skips: vary the output
    system.eval()
    with torch.no_grad():
        alone = [system(image[None]).argmax(1)[0] for image, _ in items]
        padded = system(pad_collate(items)[0]).argmax(1)[0, :40, :52]
        logits = [system(image[None])[0] for image, _ in items]
    assert not torch.equal(padded, alone[0])  # so the check below can tell the two apart
    assert len({int(c) for pred in alone for c in pred.unique()}) >= 2

    batches = DataLoader(items, batch_size=2, collate_fn=whole_image_collate)
    quiet_trainer().validate(system, batches, verbose=False)
    expected = torch.zeros(3, 3, dtype=torch.long)
    for pred, (_, mask) in zip(alone, items, strict=True):
        valid = mask != 255
        expected += torch.bincount(mask[valid] * 3 + pred[valid], minlength=9).reshape(3, 3)
    assert system.val_scores["confmat"] == expected.tolist()
    flat_logits = torch.cat([scores.flatten(1).T for scores in logits])
    flat_masks = torch.cat([mask.flatten() for _, mask in items])
    loss = F.cross_entropy(flat_logits, flat_masks, ignore_index=255)
    assert system.trainer.callback_metrics["val/loss"].item() == pytest.approx(loss.item())


class _NearTie(torch.nn.Module):
    """Logits of class 1 one float step above class 0's: argmax of the logits says 1, while
    their float32 softmax probabilities tie (and ties go to the lower class, 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # where Predictor finds the device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        logits = torch.full((n, 3, h, w), -10.0)
        logits[:, 0] = 0.1
        logits[:, 1] = torch.nextafter(torch.tensor(0.1), torch.tensor(1.0))
        return logits


def test_validation_decides_classes_as_evaluation_does_even_where_probabilities_tie():
    system = small_system()
    system.model = _NearTie()
    image, mask = torch.zeros(3, 4, 5), torch.zeros(4, 5, dtype=torch.long)
    evaluation = Predictor(system.model).predict(image[None])
    assert evaluation.unique().tolist() == [0]  # the tie went to class 0
    assert system.model(image[None]).argmax(1).unique().tolist() == [1]  # the logits say 1
    batches = DataLoader([(image, mask)], batch_size=1, collate_fn=whole_image_collate)
    quiet_trainer().validate(system, batches, verbose=False)
    assert system.val_scores["confmat"] == [[20, 0, 0], [0, 0, 0], [0, 0, 0]]
