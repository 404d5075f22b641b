"""SBD (Hariharan et al., "Semantic Contours from Inverse Detectors", ICCV 2011) and VOC 2012
"train_aug": SBD's extra annotations joined to VOC train, minus every VOC val image.

Paths and downloads come from torchvision's ``SBDataset``; pixels are decoded by
:mod:`segnet.data.images` (SBD masks are ``cls/*.mat`` files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torchvision.datasets import SBDataset

from segnet.data.images import DataError
from segnet.data.voc import (
    SegmentationPairs,
    download_failed,
    download_voc,
    require_files,
    voc_split_file,
    voc_split_files,
)

__all__ = ["VOCTrainAugDataset"]


def _where_sbd_goes(sbd_root: Path) -> str:
    return (
        f"extract SBD ({SBDataset.url}) and move benchmark_RELEASE/dataset/{{img,cls,train.txt,"
        f"val.txt}} into {sbd_root} (as torchvision's SBDataset(download=True) does)"
    )


def _sbd_split_files(sbd_root: Path, image_set: str, download: bool) -> tuple[list[str], list[str]]:
    """SBD image paths (img/*.jpg) and mask paths (cls/*.mat), parsed by torchvision's SBDataset."""
    split_file = sbd_root / f"{image_set}.txt"
    if download and not split_file.is_file():
        try:
            SBDataset(str(sbd_root), image_set=image_set, mode="segmentation", download=True)
        except (OSError, RuntimeError) as err:
            raise download_failed("SBD", err, _where_sbd_goes(sbd_root)) from err
    if not split_file.is_file():
        raise DataError(f"SBD split file {split_file} does not exist; " + _where_sbd_goes(sbd_root))
    sbd = SBDataset(str(sbd_root), image_set=image_set, mode="segmentation")
    require_files(sbd.images, sbd.masks, split_file)
    return list(sbd.images), list(sbd.masks)


class VOCTrainAugDataset(SegmentationPairs):
    """VOC 2012 "train_aug": SBD train + SBD val + VOC train, minus every VOC val image.

    With the real data this is the standard 10,582-image training set (SBD: Hariharan et al.,
    "Semantic Contours from Inverse Detectors", ICCV 2011). Where an image has both, VOC's
    own mask (PNG, with its 255 border band) is used rather than SBD's ``cls/*.mat``.

    Args:
        root: the folder holding ``VOCdevkit/``, as for :class:`VOCSegmentationDataset`.
        year, num_classes, transforms: as for :class:`VOCSegmentationDataset`.
        sbd_root: the folder holding SBD's ``img/``, ``cls/``, ``train.txt`` and ``val.txt``;
            default ``root/SBD``.
        download: fetch VOC and SBD with torchvision first where they are missing.
    """

    def __init__(
        self,
        root: str,
        year: str = "2012",
        num_classes: int = 21,
        transforms: Callable | None = None,
        sbd_root: str | None = None,
        download: bool = False,
    ) -> None:
        sbd_dir = Path(root) / "SBD" if sbd_root is None else Path(sbd_root)
        if download:
            download_voc(root, year)
        pairs: dict[str, tuple[str, str]] = {}
        for image_set in ("train", "val"):
            images, masks = _sbd_split_files(sbd_dir, image_set, download)
            pairs.update((Path(i).stem, (i, m)) for i, m in zip(images, masks, strict=True))
        voc_images, voc_masks = voc_split_files(root, "train", year)
        require_files(voc_images, voc_masks, voc_split_file(root, "train", year))
        # VOC last, so its masks replace SBD's for the images both annotate.
        pairs.update((Path(i).stem, (i, m)) for i, m in zip(voc_images, voc_masks, strict=True))
        val_images, _ = voc_split_files(root, "val", year)
        for image in val_images:
            pairs.pop(Path(image).stem, None)
        ids = sorted(pairs)
        super().__init__(
            [pairs[i][0] for i in ids], [pairs[i][1] for i in ids], num_classes, transforms
        )
        self.year = year
        self.sbd_root = str(sbd_dir)
