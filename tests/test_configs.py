"""Every experiment and group option composes and instantiates (nothing is trained)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.strategies import DDPStrategy

from segnet.data.datamodule import VOCDataModule
from segnet.system import SegmentationSystem

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test"):
        return compose("train", overrides=overrides)


def build(
    cfg: DictConfig, device: str = "cpu"
) -> tuple[VOCDataModule, SegmentationSystem, pl.Trainer]:
    """What segnet.tasks.train builds, with pretrained weights and GPUs forced off.

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
            pretrained=False,
        )
    callbacks = [hydra.utils.instantiate(node) for node in cfg.callbacks.values()]
    loggers = [hydra.utils.instantiate(node) for node in cfg.logger.values()]
    trainer = hydra.utils.instantiate(
        cfg.trainer, accelerator="cpu", callbacks=callbacks, logger=loggers
    )
    return datamodule, system, trainer


def test_experiments_are_found():
    assert {"demo", "fcn32s_vgg16_voc", "fcn8s_resnet50_voc"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", f"output_dir={tmp_path}"])
    datamodule, system, trainer = build(cfg, device="meta")

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
    assert {type(lg) for lg in trainer.loggers} == {TensorBoardLogger, CSVLogger}
    # Only plain values reach the checkpoint's hyper_parameters.
    assert all(
        isinstance(v, str | int | float | bool | list | type(None)) for v in system.hparams.values()
    )


def test_experiment_settings(tmp_path):
    demo = compose_train(["experiment=demo", f"output_dir={tmp_path}"])
    assert demo.data.demo and demo.trainer.accelerator == "cpu" and not demo.model.pretrained
    paper = compose_train(["experiment=fcn32s_vgg16_voc", f"output_dir={tmp_path}"])
    assert (paper.model.variant, paper.model.backbone) == ("fcn32s", "vgg16")
    assert not paper.model.trainable_upsample and paper.optim.momentum == 0.99
    assert paper.data.trainaug and paper.data.batch_size == 1
    recipe = compose_train(["experiment=fcn8s_resnet50_voc", f"output_dir={tmp_path}"])
    assert (recipe.model.variant, recipe.model.backbone) == ("fcn8s", "resnet50")
    assert recipe.precision == "bf16-mixed" and recipe.model.channels_last


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s"])
def test_model_group(variant, tmp_path):
    cfg = compose_train([f"model={variant}", "model.backbone=resnet18", f"output_dir={tmp_path}"])
    system = build(cfg)[1]
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
    _, system, trainer = build(cfg)
    assert system.hparams.optimizer == "adamw" and cfg.data.trainaug
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    assert trainer.precision == "bf16-mixed"
    assert [type(lg) for lg in trainer.loggers] == [CSVLogger]


def test_data_roots_follow_segnet_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGNET_DATA", str(tmp_path))
    assert compose_train(["data=voc"]).data.root == str(tmp_path)
    assert compose_train(["data=demo"]).data.root == f"{tmp_path}/demo"
