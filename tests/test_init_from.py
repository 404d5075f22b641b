"""init_from (fine-tuning from another run's checkpoint) and model.freeze_backbone.

Tensor-by-tensor tests build models directly; one run of train.py in process chains
init_from -> evaluate -> export -> Segmenter, and one subprocess checks a refusal's exit 2."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import (
    TRAIN_SCRIPT,
    compose_config,
    compose_train,
    load_checkpoint,
    quiet_trainer,
    tiny_training,
)
from PIL import Image

from segnet.data.classes import VOC_CLASSES
from segnet.data.datamodule import VOCDataModule
from segnet.models import FCN
from segnet.models.transfer import class_dimensions, transfer_weights
from segnet.predict.segmenter import Segmenter
from segnet.serve import create_app
from segnet.tasks.config import ConfigError
from segnet.tasks.evaluate import evaluate
from segnet.tasks.export import export_command
from segnet.tasks.init_from import TABLE_FILE
from segnet.tasks.train import train
from segnet.training.system import SegmentationSystem

with warnings.catch_warnings():  # Starlette's deprecation note on httpx, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OLD = ["background", "cat", "bus", "dog", "car"]
NEW = ["background", "dog", "horse", "cat"]  # dog and cat in another order; horse is new
HEAD = ("score32", "score16", "score8", "up32", "up16", "upsample")


def scrambled(model: FCN, seed: int) -> FCN:
    """``model`` with every tensor random, so no copied value can pass for an initial one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return model


def built(variant: str, num_classes: int, seed: int = 7) -> FCN:
    torch.manual_seed(seed)
    return FCN(num_classes=num_classes, backbone="resnet18", variant=variant)


def test_class_dimensions_come_from_the_structure_not_from_sizes():
    """64 classes: resnet18's stem also has 64 channels, yet no trunk tensor is class-specific."""
    dims = class_dimensions(built("fcn8s", 64))
    expected = {f"{m}.weight" for m in HEAD} | {f"score{s}.bias" for s in (32, 16, 8)}
    assert set(dims) == expected and set(dims.values()) == {0}


def test_equal_tensors_copied_shared_classes_by_name_new_ones_as_a_fresh_model():
    source = scrambled(built("fcn8s", len(OLD)), seed=1)
    fresh, model = built("fcn8s", len(NEW)), built("fcn8s", len(NEW))
    report = transfer_weights(model, source.state_dict(), OLD, NEW)
    old, new, init = source.state_dict(), model.state_dict(), fresh.state_dict()
    dims = class_dimensions(model)
    for key, tensor in new.items():
        if key not in dims:
            assert torch.equal(tensor, old[key]), key
            continue
        for i, name in enumerate(NEW):
            expected = old[key][OLD.index(name)] if name in OLD else init[key][i]
            assert torch.equal(tensor[i], expected), (key, name)
    assert report.shared_classes == ["background", "dog", "cat"]
    assert report.new_classes == ["horse"]
    assert report.dropped_classes == ["bus", "car"]
    assert set(report.sliced) == set(dims) and not report.initialised and not report.dropped
    assert "horse" in report.table() and "bus, car" in report.table()


def test_fcn32s_into_fcn8s_initialises_the_new_skips_as_new():
    source = scrambled(built("fcn32s", len(OLD)), seed=2)
    fresh, model = built("fcn8s", len(NEW)), built("fcn8s", len(NEW))
    report = transfer_weights(model, source.state_dict(), OLD, NEW)
    new, init = model.state_dict(), fresh.state_dict()
    as_new = {k for k in new if k.split(".")[0] in ("score16", "score8", "up32", "up16")}
    as_new.add("upsample.weight")  # 32x filters do not fit the 8x layer
    assert set(report.initialised) == as_new
    for key in as_new:
        assert torch.equal(new[key], init[key]), key
    assert torch.count_nonzero(new["score8.weight"]) == 0  # the paper's zero skip
    assert torch.equal(new["score32.weight"][1], source.state_dict()["score32.weight"][3])
    back = transfer_weights(built("fcn32s", len(OLD)), model.state_dict(), NEW, OLD)
    assert {k.split(".")[0] for k in back.dropped} == {"score16", "score8", "up32", "up16"}


def test_a_repeated_class_name_is_refused():
    with pytest.raises(ValueError, match="repeat a name"):
        transfer_weights(
            built("fcn8s", 3), built("fcn8s", 3).state_dict(), ["a", "b", "b"], OLD[:3]
        )


def run_in_process(overrides: list[str]) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(compose_train(overrides))
    return printed.getvalue()


@pytest.fixture(scope="module")
def not_a_training_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "weights.ckpt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    return path


@pytest.mark.parametrize(
    "setting, message",
    [
        ("init_from={onnx}", "is an exported model (.onnx), not a training checkpoint"),
        ("init_from={plain}", "is not a segnet checkpoint"),
        ("init_from={ckpt} model.backbone=mobilenet_v3_large", "holds a resnet18 model"),
        ("init_from={ckpt} ckpt_path={ckpt}", "choose one"),
    ],
)
def test_refusals_before_anything_is_built(
    setting, message, tiny_voc_root, checkpoint, onnx_model, not_a_training_checkpoint, tmp_path
):
    paths = {"onnx": onnx_model, "plain": not_a_training_checkpoint, "ckpt": checkpoint}
    overrides = tiny_training(
        tiny_voc_root, f"output_dir={tmp_path}", *setting.format(**paths).split()
    )
    with pytest.raises(ConfigError) as err:
        run_in_process(overrides)
    assert message in str(err.value) and str(err.value).count("\n  - ") == 1
    assert not any(tmp_path.iterdir())


def test_the_script_refuses_an_onnx_in_one_line_with_exit_2(tiny_voc_root, onnx_model, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(TRAIN_SCRIPT),
            *tiny_training(tiny_voc_root, f"init_from={onnx_model}"),
        ]
        + [f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "exported model (.onnx)" in proc.stderr


def test_a_frozen_backbone_keeps_its_weights_and_batch_norm_statistics(tiny_voc_root):
    torch.manual_seed(0)
    system = SegmentationSystem(backbone="resnet18", variant="fcn32s", freeze_backbone=True)
    before = {k: v.clone() for k, v in system.model.state_dict().items()}
    data = VOCDataModule(tiny_voc_root, crop_size=[64, 64], batch_size=4, num_workers=0)
    trainer = quiet_trainer(
        max_steps=3,
        limit_val_batches=1,
        val_check_interval=1,  # train() and eval() toggled between the steps
        num_sanity_val_steps=0,
    )
    trainer.fit(system, data)
    after = system.model.state_dict()
    trunk = [k for k in after if k.startswith("backbone.")]
    assert any("running_mean" in k for k in trunk)
    assert all(torch.equal(before[k], after[k]) for k in trunk)
    assert not torch.equal(before["score32.weight"], after["score32.weight"])
    assert [g["name"] for g in trainer.optimizers[0].param_groups] == ["head"]
    system.train()  # what Lightning or a user's loop may call: the trunk stays in eval
    assert not any(m.training for m in system.model.backbone.modules())
    assert system.model.score32.training


def test_a_fine_tuned_model_trains_evaluates_exports_and_serves(
    tiny_voc_root, checkpoint, offline, tmp_path
):
    """From the session's 21-class VOC checkpoint onto classes in reversed order, cat renamed
    lynx; model.pretrained=true proves nothing is fetched (``offline`` records downloads)."""
    names = ["background", *reversed(VOC_CLASSES[1:])]
    names[names.index("cat")] = "lynx"
    run_dir = tmp_path / "run"
    printed = run_in_process(
        tiny_training(
            tiny_voc_root,
            f"output_dir={run_dir}",
            f"++data.class_names=[{','.join(names)}]",
            f"init_from={checkpoint}",
            "model.pretrained=true",
            "trainer.max_epochs=1",
        )
    )
    assert offline == []
    table = (run_dir / TABLE_FILE).read_text()
    for text in (table, printed):
        assert "new classes, initialised as new (1): lynx" in text
        assert "source classes dropped (1): cat" in text
    trunk = [line for line in table.splitlines() if line.startswith("backbone.")]
    assert trunk and all(line.endswith("  copied") for line in trunk)
    assert re.search(rf"backbone\.\* +{len(trunk)} tensors copied", printed)
    best = run_dir / "checkpoints" / "best.ckpt"
    assert load_checkpoint(best)["hyper_parameters"]["class_names"] == names
    eval_dir = tmp_path / "eval"
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = evaluate(
            compose_config(
                "eval",
                [f"ckpt_path={best}", f"data.root={tiny_voc_root}", "++data.num_workers=0"]
                + [f"++data.class_names=[{','.join(names)}]", f"output_dir={eval_dir}"],
            )
        )
    assert set(metrics["per_class_iou"]) == set(names)
    onnx = tmp_path / "model.onnx"
    assert export_command(compose_config("export", [f"ckpt_path={best}", f"output={onnx}"])) == 0
    segmenter = Segmenter.load(onnx)
    assert segmenter.class_names == names
    labels = segmenter.predict(torch.zeros(3, 40, 56, dtype=torch.uint8))
    assert labels.shape == (40, 56)
    photo = io.BytesIO()
    Image.fromarray(np.full((40, 56, 3), 90, dtype=np.uint8)).save(photo, format="PNG")
    with TestClient(create_app(segmenter)) as api:
        assert api.get("/v1/info").json()["classes"] == names
        served = api.post("/v1/segment", content=photo.getvalue())
    assert served.status_code == 200
    expected = segmenter.predict(torch.full((3, 40, 56), 90, dtype=torch.uint8))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(served.content))), expected)


def test_a_restarted_fine_tuning_resumes_its_own_run_instead_of_starting_over(
    tiny_voc_root, checkpoint, tmp_path
):
    """The same command for the first start and every restart (ckpt_path=last): init_from
    applies while the run folder has no last.ckpt, then the run resumes from it."""
    run_dir = tmp_path / "run"
    command = [f"output_dir={run_dir}", f"init_from={checkpoint}", "ckpt_path=last"]
    first = run_in_process(tiny_training(tiny_voc_root, *command, "trainer.max_epochs=1"))
    assert "tensors copied" in first and "resuming" not in first
    table = (run_dir / TABLE_FILE).read_text()
    (run_dir / TABLE_FILE).write_text("the first start's table\n")
    restarted = run_in_process(tiny_training(tiny_voc_root, *command, "trainer.max_epochs=2"))
    assert "resuming from" in restarted and "at global step 2" in restarted
    assert "tensors copied" not in restarted
    assert (run_dir / TABLE_FILE).read_text() == "the first start's table\n" != table
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4
