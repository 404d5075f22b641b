"""Every experiment and group option composes and instantiates (nothing is trained), and every
check of segnet.tasks.config stops a bad value with one line naming its key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from helpers import CONFIG_DIR, compose_train
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.strategies import DDPStrategy

from segnet.data.datamodule import VOCDataModule
from segnet.tasks.config import ConfigError, check_num_classes, check_train_config
from segnet.tasks.run_folder import run_folder_state
from segnet.training.logs import ContinuedCSVLogger
from segnet.training.system import SegmentationSystem

# The recipes the docs name, and any other file in configs/experiment/.
EXPERIMENTS = sorted(
    {"demo", "fcn32s_vgg16_voc", "fcn8s_resnet50_voc"}
    | {path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml")}
)


def build(
    cfg: DictConfig, device: str = "cpu", **model_args
) -> tuple[VOCDataModule, SegmentationSystem, pl.Trainer]:
    """What segnet.tasks.train builds, on the CPU.

    ``device="meta"`` builds the network without allocating or initialising its weights
    (VGG16's 134M parameters would take seconds), which checks everything but memory.
    """
    datamodule = hydra.utils.instantiate(cfg.data)
    with torch.device(device):
        system = hydra.utils.instantiate(
            cfg.model,
            **OmegaConf.to_container(cfg.optim),
            num_classes=datamodule.num_classes,
            class_names=datamodule.class_names,
            **model_args,
        )
    callbacks = [hydra.utils.instantiate(node) for node in cfg.callbacks.values()]
    loggers = [hydra.utils.instantiate(node) for node in cfg.logger.values()]
    trainer = hydra.utils.instantiate(
        cfg.trainer, accelerator="cpu", callbacks=callbacks, logger=loggers
    )
    return datamodule, system, trainer


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", f"output_dir={tmp_path}"])
    datamodule, system, trainer = build(cfg, device="meta", pretrained=False)

    assert isinstance(datamodule, VOCDataModule)
    assert system.hparams.num_classes == datamodule.num_classes == 21
    assert system.hparams.backbone == cfg.model.backbone
    assert trainer.max_epochs == cfg.trainer.max_epochs
    checkpoints = {cb.filename: cb for cb in trainer.checkpoint_callbacks}
    assert set(checkpoints) == {"best", "last"}
    assert checkpoints["best"].monitor == "val/miou" and checkpoints["best"].mode == "max"
    assert checkpoints["best"].dirpath == str(tmp_path / "checkpoints")
    assert checkpoints["last"].save_on_exception
    assert any(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks)
    assert {type(lg) for lg in trainer.loggers} == {TensorBoardLogger, ContinuedCSVLogger}
    # Only plain values reach the checkpoint's hyper_parameters.
    assert all(
        isinstance(v, str | int | float | bool | list | type(None)) for v in system.hparams.values()
    )


def test_demo_experiment_builds_on_the_cpu_without_any_download(offline, tmp_path):
    cfg = compose_train(["experiment=demo", f"output_dir={tmp_path}"])
    datamodule, system, _ = build(cfg, device="meta")  # the config's own pretrained value
    assert offline == []
    assert datamodule.demo
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)  # the config's accelerator
    assert isinstance(trainer.accelerator, CPUAccelerator)


def test_paper_experiment_keeps_the_upsampling_fixed(tmp_path):
    cfg = compose_train(["experiment=fcn32s_vgg16_voc", f"output_dir={tmp_path}"])
    system = build(cfg, device="meta", pretrained=False)[1]
    assert system.model.variant == "fcn32s"
    assert not any(p.requires_grad for p in system.model.upsample.parameters())


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s"])
def test_model_group(variant, tmp_path):
    cfg = compose_train([f"model={variant}", "model.backbone=resnet18", f"output_dir={tmp_path}"])
    system = build(cfg, pretrained=False)[1]
    assert system.model.variant == variant


def test_group_options_and_switches(tmp_path):
    cfg = compose_train(
        [
            "optim=adamw",
            "trainer=ddp",
            "trainer.devices=2",
            "data=voc_aug",
            "logger=csv",
            "model.backbone=resnet18",
            "precision=bf16-mixed",
            f"output_dir={tmp_path}",
        ]
    )
    datamodule, system, trainer = build(cfg, pretrained=False)
    assert system.hparams.optimizer == "adamw" and datamodule.trainaug
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    assert trainer.precision == "bf16-mixed"
    assert [type(lg) for lg in trainer.loggers] == [ContinuedCSVLogger]


def test_data_roots_follow_segnet_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGNET_DATA", str(tmp_path))
    assert compose_train(["data=voc"]).data.root == str(tmp_path)
    assert compose_train(["data=demo"]).data.root == f"{tmp_path}/demo"


# --- check_train_config: each check, one line naming its key --------------------------------


@pytest.fixture
def valid(tiny_voc_root, tmp_path) -> list[str]:
    """Overrides of a config that passes every check (the cases below change one value)."""
    return [
        f"data.root={tiny_voc_root}",
        "data.crop_size=[64,64]",
        "model.backbone=resnet18",
        f"output_dir={tmp_path / 'run'}",
    ]


def problems(overrides: list[str]) -> list[str]:
    """The problem lines check_train_config raises for a composition ([] if it passes)."""
    try:
        check_train_config(compose_train(overrides))
    except ConfigError as err:
        header, *lines = str(err).splitlines()
        assert header == "invalid configuration (nothing was run):"
        return [line.removeprefix("  - ") for line in lines]
    return []


def test_the_valid_config_passes(valid):
    assert problems(valid) == []


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["model.backbone=resnet9"], "model.backbone='resnet9' is not a known backbone"),
        (["model.variant=fcn4s"], "model.variant='fcn4s' is not an FCN variant"),
        (["model.class_weights=[1.0,2.0]"], "model.class_weights=[1.0, 2.0] must be 21 numbers"),
        (["model.class_weights=[0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,-1]"], "model.class_w"),
        (["model.class_weights=[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]"], "model.class_w"),
        (["optim.optimizer=adam"], "optim.optimizer='adam' is unknown"),
        (["optim.lr=0"], "optim.lr=0 must be a number > 0"),
        (["optim.momentum=-0.9"], "optim.momentum=-0.9 must be a number >= 0"),
        (["optim.weight_decay=-1e-4"], "optim.weight_decay=-0.0001 must be a number >= 0"),
        (["optim.backbone_lr_mult=-1"], "optim.backbone_lr_mult=-1 must be a number >= 0"),
        (["optim.poly_power=-0.9"], "optim.poly_power=-0.9 must be a number >= 0"),
        (["optim.warmup_iters=1.5"], "optim.warmup_iters=1.5 must be an integer >= 0"),
        (["optim.warmup_factor=0"], "optim.warmup_factor=0 must be a number in (0, 1]"),
        (["data.crop_size=[64]"], "data.crop_size=[64] must be two positive integers"),
        (
            ["data.crop_size=[600,400]", "data.scale_range=[0.5,1.0]"],
            "data.crop_size=[600, 400] is larger than allowed: VOC images are at most 500 px",
        ),
        (["data.root=/nonexistent/voc"], "data.root='/nonexistent/voc': dataset root"),
        (["data=voc_aug"], "data=voc_aug needs SBD in "),
        (["precision=64"], "precision=64 is unknown"),
        pytest.param(
            ["trainer=gpu"],
            "trainer.accelerator=gpu but this machine has no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU machine"),
        ),
        (
            ["trainer.max_epochs=-1", "trainer.max_steps=-1"],
            "trainer.max_epochs and trainer.max_steps are both -1",
        ),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path='/nonexistent/last.ckpt' does not exist"),
    ],
)
def test_each_bad_value_gives_one_line_naming_its_key(overrides, line, valid, tiny_voc_root):
    found = problems(valid + overrides)
    assert len(found) == 1, found
    assert found[0].startswith(line)


def test_every_bad_value_is_listed_at_once(valid):
    found = problems([*valid, "model.backbone=resnet9", "optim.lr=-1", "precision=64"])
    assert [line.split("=")[0] for line in found] == ["model.backbone", "optim.lr", "precision"]


def test_model_num_classes_must_match_the_data():
    assert check_num_classes(None, 21) == 21 and check_num_classes(21, 21) == 21
    with pytest.raises(ConfigError, match=r"model\.num_classes=5 does not match the data's 21"):
        check_num_classes(5, 21)


# --- ckpt_path: read with weights_only=True, a segnet training checkpoint of this model ------


def saved(tmp_path: Path, name: str, content: dict) -> Path:
    path = tmp_path / name
    torch.save(content, path)
    return path


def test_a_training_checkpoint_of_the_same_model_passes(checkpoint, valid):
    assert problems([*valid, f"ckpt_path={checkpoint}"]) == []


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("model.backbone=resnet34", "was saved with model.backbone='resnet18' but the config"),
        ("model=fcn32s", "was saved with model.variant='fcn8s' but the config has"),
        ("model.trainable_upsample=false", "was saved with model.trainable_upsample=True"),
        ("optim=adamw", "was saved with optim.optimizer='sgd' but the config has"),
        ("data.class_names=[bg,thing]", "was saved for 21 classes but the data has 2"),
    ],
)
def test_checkpoint_of_another_model_is_refused(override, line, checkpoint, valid):
    found = problems([*valid, f"ckpt_path={checkpoint}", override])
    assert len(found) == 1, found
    assert found[0].startswith(f"ckpt_path {checkpoint} ") and line in found[0]


def test_unreadable_or_foreign_checkpoints_are_refused(checkpoint, valid, tmp_path):
    data = checkpoint.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    full = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cases = {
        truncated: "is not a PyTorch checkpoint (not a zip archive",
        # Unpickling it would call os.getcwd: weights_only=True refuses the global.
        saved(tmp_path, "code.ckpt", {"state_dict": {}, "x": os.getcwd}): "weights_only=True",
        saved(tmp_path, "other.ckpt", {"state_dict": full["state_dict"]}): "no FCN settings",
        saved(
            tmp_path, "weights.ckpt", {k: v for k, v in full.items() if k != "optimizer_states"}
        ): "holds no optimizer_states (a weights-only save)",
    }
    for path, line in cases.items():
        found = problems([*valid, f"ckpt_path={path}"])
        assert len(found) == 1 and found[0].startswith("ckpt_path: checkpoint"), found
        assert str(path) in found[0] and line in found[0], found


# --- the run folder: another run there is never silently replaced -------------------------


def test_a_run_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(
    checkpoint, valid, tmp_path
):
    run_dir = tmp_path / "run"
    assert problems(valid) == []  # Hydra's .hydra/ alone is no run
    (run_dir / ".hydra").mkdir(parents=True)
    assert problems(valid) == []
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    shutil.copy(checkpoint, last)

    found = problems(valid)
    assert len(found) == 1 and found[0].startswith(
        f"the run folder {run_dir} (hydra.run.dir) already holds a training run "
        f"(checkpoints/last.ckpt); resume it with ckpt_path={last} (or ckpt_path=last), "
        "replace it with overwrite=true"
    )
    assert problems([*valid, f"ckpt_path={last}"]) == []  # its resume
    assert problems([*valid, "ckpt_path=last"]) == []  # the same, found by itself
    found = problems([*valid, "ckpt_path=last", "overwrite=true"])
    assert len(found) == 1 and found[0].startswith("overwrite=true would delete ckpt_path=")
    assert problems([*valid, "overwrite=true"]) == []
    found = problems([*valid, f"ckpt_path={last}", "overwrite=true"])
    assert len(found) == 1 and found[0].startswith("overwrite=true would delete ckpt_path=")
    # Resuming another run's checkpoint into it would mix two runs' logs.
    assert len(problems([*valid, f"ckpt_path={checkpoint}"])) == 1

    last.unlink()
    (run_dir / "csv").mkdir()
    (run_dir / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,0,3.0\n")
    assert "(csv/metrics.csv)" in problems(valid)[0]
    # A start that stopped before its first checkpoint: ckpt_path=last starts afresh over it.
    assert problems([*valid, "ckpt_path=last"]) == []
    assert run_folder_state(run_dir, "last", overwrite=False) == "replace"  # its logs go
