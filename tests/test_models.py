"""FCN models: shapes for any input size, the paper's initialisation, gradients, weights loading."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from segnet.models import BACKBONES, FCN, VARIANTS, PretrainedWeightsUnavailable
from segnet.models.backbones import VGGTrunk


@pytest.fixture(scope="module")
def resnet18_models() -> dict[str, FCN]:
    torch.manual_seed(0)
    return {variant: FCN(backbone="resnet18", variant=variant).eval() for variant in VARIANTS}


@pytest.mark.parametrize("shape", [(1, 3, 97, 131), (2, 3, 320, 480), (1, 3, 33, 65)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_have_the_input_size(resnet18_models, variant, shape):
    with torch.no_grad():
        logits = resnet18_models[variant](torch.randn(shape))
    assert logits.shape == (shape[0], 21, *shape[2:])
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_stride_8_16_32_maps(backbone):
    # Shapes only: on the meta device nothing is allocated or computed (VGG16 alone would
    # spend seconds initialising 134M weights).
    with torch.device("meta"):
        model = FCN(num_classes=5, backbone=backbone).eval()
        x = torch.empty(1, 3, 64, 96)
        maps = model.backbone(x)
        logits = model(x[..., :50, :70])
    assert [tuple(m.shape) for m in maps] == [
        (1, channels, 64 // stride, 96 // stride)
        for channels, stride in zip(model.backbone.channels, (8, 16, 32), strict=True)
    ]
    assert logits.shape == (1, 5, 50, 70)


def test_vgg16_fc6_fc7_are_the_classifier_made_convolutional():
    """fc6/fc7 of VGGTrunk reuse the classifier's Linear weights: on a 7x7 pool5, the centre
    cell of the padded 7x7 fc6 conv computes exactly torchvision's fc6 of flatten(pool5)."""
    with torch.device("meta"):
        net = torchvision.models.vgg16()
    # Real classifier layers, uninitialised (no 400 MB written): only the rows checked get values.
    fc6 = torch.nn.utils.skip_init(torch.nn.Linear, 512 * 7 * 7, 4096)
    fc7 = torch.nn.utils.skip_init(torch.nn.Linear, 4096, 4096)
    rows = slice(0, 8)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (fc6, fc7):
            layer.weight[rows].normal_(std=0.01)
            layer.bias.normal_()
    net.classifier[0], net.classifier[3] = fc6, fc7
    conv6, conv7 = VGGTrunk(net).fc67[0], VGGTrunk(net).fc67[3]
    assert (conv6.kernel_size, conv6.padding, conv7.kernel_size) == ((7, 7), (3, 3), (1, 1))
    pool5, hidden = torch.randn(1, 512, 7, 7), torch.randn(1, 4096, 1, 1)
    with torch.no_grad():
        # Where the padded conv's centre cell sees all of pool5, no padding is involved.
        centre = F.conv2d(pool5, conv6.weight[rows], conv6.bias[rows])[..., 0, 0]
        torch.testing.assert_close(centre, fc6(pool5.flatten(1))[:, rows])
        torch.testing.assert_close(
            F.conv2d(hidden, conv7.weight[rows], conv7.bias[rows])[..., 0, 0],
            fc7(hidden.flatten(1))[:, rows],
        )


def test_mobilenet_batch_norm_uses_the_default_momentum():
    model = FCN(backbone="mobilenet_v3_large")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 46 and {m.momentum for m in norms} == {0.1}


def test_padding_is_bottom_right_so_predictions_do_not_shift(resnet18_models):
    x = torch.randn(1, 3, 97, 131)
    padded = F.pad(x, (0, 160 - 131, 0, 128 - 97))  # what FCN does internally
    with torch.no_grad():
        for model in resnet18_models.values():
            torch.testing.assert_close(model(x), model(padded)[..., :97, :131])


def test_one_class_and_one_pixel():
    model = FCN(num_classes=1, backbone="mobilenet_v3_large").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 1, 1)).shape == (2, 1, 1, 1)


def _perturbing(model: FCN, which: tuple[int, ...]):
    """Hook the trunk to add noise to the chosen feature maps (0: s8, 1: s16, 2: s32)."""

    def hook(module, inputs, maps):
        return tuple(m + 3 * torch.randn_like(m) if i in which else m for i, m in enumerate(maps))

    return model.backbone.register_forward_hook(hook)


@pytest.mark.parametrize("variant", ["fcn16s", "fcn8s"])
def test_skip_scores_start_at_zero_so_skips_do_not_change_the_output(resnet18_models, variant):
    model = resnet18_models[variant]
    skips = [model.score16] + ([model.score8] if variant == "fcn8s" else [])
    assert all(torch.count_nonzero(p) == 0 for skip in skips for p in skip.parameters())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        clean = model(x)
        handle = _perturbing(model, which=(0, 1))
        torch.testing.assert_close(model(x), clean, rtol=0, atol=0)
        handle.remove()
        # The hook does reach the output through the stride-32 path.
        handle = _perturbing(model, which=(2,))
        assert (model(x) - clean).abs().max() > 1e-3
        handle.remove()


def test_trained_skip_scores_do_change_the_output():
    torch.manual_seed(0)
    model = FCN(backbone="resnet18", variant="fcn8s").eval()
    torch.nn.init.normal_(model.score8.weight, std=0.1)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        clean = model(x)
        handle = _perturbing(model, which=(0,))
        assert (model(x) - clean).abs().max() > 1e-3
        handle.remove()


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_large"])
def test_backward_reaches_every_trainable_parameter(backbone):
    torch.manual_seed(0)
    model = FCN(num_classes=4, backbone=backbone, variant="fcn8s").train()
    target = torch.randint(0, 4, (2, 70, 90))
    target[:, :5] = 255
    F.cross_entropy(model(torch.randn(2, 3, 70, 90)), target, ignore_index=255).backward()
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or torch.count_nonzero(p.grad) == 0)
    ]
    assert no_grad == []


def test_frozen_upsampling_gets_no_gradient():
    torch.manual_seed(0)
    model = FCN(num_classes=3, backbone="resnet18", variant="fcn8s", trainable_upsample=False)
    upsamplers = [model.up32, model.up16, model.upsample]
    frozen = [p for up in upsamplers for p in up.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in frozen)
    assert model.score8.weight.grad is not None and model.score32.weight.grad.abs().sum() > 0
    trainable = FCN(num_classes=3, backbone="resnet18", variant="fcn8s")
    assert all(
        p.requires_grad for up in (trainable.up16, trainable.upsample) for p in up.parameters()
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_groups_are_disjoint_and_complete(resnet18_models, variant):
    model = resnet18_models[variant]
    trunk = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert trunk.isdisjoint(head)
    assert trunk | head == {id(p) for p in model.parameters()}
    assert trunk == {id(p) for p in model.backbone.parameters()}
    assert id(model.score32.weight) in head and id(next(model.upsample.parameters())) in head
    n_head = {"fcn32s": 3, "fcn16s": 3 + 2 + 1, "fcn8s": 3 + 2 * (2 + 1)}[variant]
    assert len(model.head_parameters()) == n_head


def test_state_dict_round_trips_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = FCN(num_classes=3, backbone="mobilenet_v3_large", variant="fcn16s").eval()
    torch.save(model.state_dict(), tmp_path / "fcn.pt")
    again = FCN(num_classes=3, backbone="mobilenet_v3_large", variant="fcn16s").eval()
    again.load_state_dict(torch.load(tmp_path / "fcn.pt", weights_only=True))
    x = torch.randn(1, 3, 45, 77)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("backbone", "filename"),
    [("resnet18", "resnet18-f37072fd.pth"), ("resnet50", "resnet50-11ad3fa6.pth")],
)
def test_pretrained_offline_says_how_to_fix_it(offline, tmp_path, backbone, filename):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        FCN(backbone=backbone, pretrained=True)
    message = str(info.value)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert offline == [f"https://download.pytorch.org/models/{filename}"]
    assert "URLError" in message and "internet" in message
    assert f"copy the file {filename} into {cache}/" in message
    assert f"weights_path=/local/{filename}" in message
    assert "pretrained=false" in message
    assert not any(cache.iterdir())


def test_pretrained_offline_uses_a_file_copied_into_the_cache(offline, tmp_path):
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18().state_dict()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet, cache / "resnet18-f37072fd.pth")
    model = FCN(backbone="resnet18", pretrained=True)
    assert offline == []
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"]
    )


@pytest.mark.parametrize("drop_classifier", [False, True])
def test_weights_path_loads_a_local_state_dict(tmp_path, drop_classifier):
    torch.manual_seed(2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    if drop_classifier:  # e.g. a trunk saved from another FCN: FCN discards fc anyway
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "r18.pth")
    torch.manual_seed(3)
    model = FCN(backbone="resnet18", weights_path=str(tmp_path / "r18.pth"))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_weights_path_errors_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        FCN(weights_path=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth.*cannot be read"):
        FCN(weights_path=str(garbage))
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, wrapped)
    with pytest.raises(ValueError, match="lightning.ckpt.*not a state dict"):
        FCN(weights_path=str(wrapped))
    other = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    with pytest.raises(ValueError, match=r"resnet18.pth.*resnet34: \d+ missing keys .*layer1\.2"):
        FCN(backbone="resnet34", weights_path=str(other))
    mismatch = (
        r"shape mismatches \(e\.g\. layer1\.0\.conv1\.weight \(64, 64, 3, 3\) != \(64, 64, 1, 1\)"
    )
    with pytest.raises(ValueError, match=rf"resnet50: .*missing keys.*{mismatch}"):
        FCN(backbone="resnet50", weights_path=str(other))


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match="unknown backbone 'resnet152'") as info:
        FCN(backbone="resnet152")
    assert all(name in str(info.value) for name in BACKBONES)
    with pytest.raises(ValueError, match="unknown FCN variant 'fcn4s'.*fcn32s, fcn16s, fcn8s"):
        FCN(variant="fcn4s")
    for bad in (0, -3, 2.5, True, "21"):
        with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
            FCN(num_classes=bad)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(1, 1, 32, 32\)"):
        FCN().eval()(torch.randn(1, 1, 32, 32))


def test_one_definition_rebuilds_the_fcn_that_training_built():
    """fcn_from_hparams reads exactly ARCHITECTURE_KEYS; the LightningModule, the model config
    and a checkpoint's hyper-parameters offer every FCN argument under the same name and
    default, so adding an FCN argument cannot leave one of them behind silently."""
    from omegaconf import OmegaConf

    from segnet.models import ARCHITECTURE_KEYS, fcn_from_hparams
    from segnet.training.system import SegmentationSystem

    fcn_args = inspect.signature(FCN).parameters
    assert set(ARCHITECTURE_KEYS) <= set(fcn_args)
    system_args = inspect.signature(SegmentationSystem).parameters
    for name, arg in fcn_args.items():
        assert name in system_args and system_args[name].default == arg.default, name
    model_config = OmegaConf.load(Path(__file__).parents[1] / "configs" / "model" / "fcn.yaml")
    assert set(fcn_args) <= set(model_config)

    hparams = {
        "num_classes": 4,
        "backbone": "resnet18",
        "variant": "fcn16s",
        "trainable_upsample": False,
        "lr": 0.5,  # not an architecture key: ignored
    }
    model = fcn_from_hparams(hparams)
    assert (model.num_classes, model.backbone_name, model.variant) == (4, "resnet18", "fcn16s")
    assert not model.upsample.weight.requires_grad
    with pytest.raises(KeyError, match="trainable_upsample"):
        fcn_from_hparams({k: v for k, v in hparams.items() if k != "trainable_upsample"})
