"""Pascal VOC: class names, palette, ignore label, and the segmentation datasets.

Paths and downloads come from torchvision's ``VOCSegmentation`` and ``SBDataset``; pixels are
decoded by :mod:`segnet.data.images`, so bad files raise :class:`DataError` naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import SBDataset, VOCSegmentation
from torchvision.datasets.voc import DATASET_YEAR_DICT
from torchvision.transforms.v2 import functional as F

from segnet.data.images import DataError, read_image, read_mask, read_sbd_mask, require_same_size

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "DataError",
    "SegmentationPairs",
    "VOCSegmentationDataset",
    "VOCTrainAugDataset",
    "download_voc",
    "load_pair",
    "require_voc_dir",
    "voc_dir",
    "voc_palette",
    "voc_split_file",
    "voc_split_files",
]

IGNORE_INDEX = 255
"""Label of "void" pixels: ignored by the loss, the metrics and padding."""

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_palette() -> list[int]:
    """VOC's 256-colour palette, flat [r0, g0, b0, r1, ...] (768 values) for ``Image.putpalette``.

    Colour of label i interleaves i's bits into the top bits of r, g and b; label 255
    ("void") comes out as (224, 224, 192).
    """
    palette = []
    for label in range(256):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [r, g, b]
    return palette


def voc_dir(root: str | Path, year: str = "2012") -> Path:
    """Where VOC ``year`` lies under ``root`` (the folder holding VOCdevkit/)."""
    if year not in DATASET_YEAR_DICT or year == "2007-test":
        raise ValueError(f"unknown VOC year {year!r}; choose from 2007..2012")
    return Path(root) / DATASET_YEAR_DICT[year]["base_dir"]


def voc_split_file(root: str | Path, image_set: str = "train", year: str = "2012") -> Path:
    """The split's list of ids: root/VOCdevkit/VOC2012/ImageSets/Segmentation/<image_set>.txt."""
    return voc_dir(root, year) / "ImageSets" / "Segmentation" / f"{image_set}.txt"


def _where_voc_goes(root: str | Path, year: str) -> str:
    return (
        f"extract the VOC{year} trainval archive ({DATASET_YEAR_DICT[year]['url']}) into {root} "
        f"so that {voc_dir(root, year)} holds JPEGImages/, SegmentationClass/ and "
        "ImageSets/Segmentation/{train,val,trainval}.txt"
    )


def _download_failed(what: str, err: Exception, where: str) -> DataError:
    return DataError(f"could not download {what} ({type(err).__name__}: {err}); {where}")


def download_voc(root: str | Path, year: str = "2012") -> None:
    """Download and extract VOC ``year`` into ``root`` with torchvision, unless already extracted.

    Raises:
        DataError: the download failed (e.g. offline); the message says where to put the
            manually extracted VOCdevkit instead.
    """
    if (voc_dir(root, year) / "ImageSets" / "Segmentation").is_dir():
        return
    try:
        VOCSegmentation(str(root), year=year, image_set="train", download=True)
    # URLError/socket errors are OSErrors; a failed checksum is torchvision's RuntimeError.
    except (OSError, RuntimeError) as err:
        raise _download_failed(f"VOC{year}", err, _where_voc_goes(root, year)) from err


def require_voc_dir(root: str | Path, year: str = "2012") -> None:
    """Raise DataError if ``root`` or root/VOCdevkit/VOC<year> is missing, saying where it goes."""
    if not Path(root).is_dir():
        raise DataError(
            f"dataset root {root} does not exist; it must be the folder holding VOCdevkit/: "
            + _where_voc_goes(root, year)
        )
    if not voc_dir(root, year).is_dir():
        raise DataError(f"{voc_dir(root, year)} does not exist; " + _where_voc_goes(root, year))


def voc_split_files(
    root: str | Path, image_set: str = "train", year: str = "2012"
) -> tuple[list[str], list[str]]:
    """Image paths (JPEGImages/*.jpg) and mask paths (SegmentationClass/*.png) of a split.

    Parsed by torchvision's ``VOCSegmentation``, after checking the folders it needs exist.

    Raises:
        DataError: ``root``, its VOCdevkit or the split file is missing.
    """
    require_voc_dir(root, year)
    split_file = voc_split_file(root, image_set, year)
    if not split_file.is_file():
        raise DataError(f"split file {split_file} does not exist; " + _where_voc_goes(root, year))
    dataset = VOCSegmentation(str(root), year=year, image_set=image_set)
    return list(dataset.images), list(dataset.masks)


def _require_files(images: list[str], masks: list[str], listed_in: str | Path) -> None:
    """Raise one DataError naming every missing image or mask (the first 10, and a count)."""
    missing = [p for pair in zip(images, masks, strict=True) for p in pair if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} files listed in {listed_in} are missing:\n  {shown}")


def load_pair(
    image_path: str | Path, mask_path: str | Path, num_classes: int
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Decode one sample: image uint8 (3, H, W) and mask uint8 (H, W), labels checked.

    ``mask_path`` is a palette/grayscale PNG, or an SBD ``.mat`` annotation.
    """
    image = read_image(image_path)
    if Path(mask_path).suffix == ".mat":
        mask = read_sbd_mask(mask_path, num_classes, IGNORE_INDEX)
    else:
        mask = read_mask(mask_path, num_classes, IGNORE_INDEX)
    require_same_size(image_path, image, mask_path, mask)
    return tv_tensors.Image(F.pil_to_tensor(image)), tv_tensors.Mask(torch.from_numpy(mask))


class SegmentationPairs(Dataset):
    """Samples from lists of image and mask files, decoded by :func:`load_pair`.

    Items are ``(image, mask)``: ``tv_tensors.Image`` uint8 (3, H, W) and ``tv_tensors.Mask``
    uint8 (H, W), or whatever ``transforms(image, mask)`` makes of them.
    """

    def __init__(
        self,
        images: list[str],
        masks: list[str],
        num_classes: int,
        transforms: Callable | None = None,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images = images
        self.masks = masks
        self.ids = [Path(p).stem for p in images]
        self.num_classes = num_classes
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, mask = load_pair(self.images[index], self.masks[index], self.num_classes)
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask


class VOCSegmentationDataset(SegmentationPairs):
    """A split of Pascal VOC segmentation (or any dataset in VOC's layout and its own classes).

    Args:
        root: the folder holding ``VOCdevkit/`` (images in root/VOCdevkit/VOC2012/JPEGImages).
        image_set: "train", "val" or "trainval" (ImageSets/Segmentation/<image_set>.txt).
        year: VOC year, "2007".."2012".
        num_classes: labels are 0..num_classes-1 plus 255 (void); others raise DataError.
        transforms: ``transforms(image, mask) -> (image, mask)``, applied per item.
        download: fetch VOC with torchvision first if it is not extracted under ``root``.

    Raises:
        DataError: missing root, VOCdevkit or split file, or split entries whose image or mask
            is missing (all named). Per item: undecodable files, bad masks, size mismatch.
    """

    def __init__(
        self,
        root: str,
        image_set: str = "train",
        year: str = "2012",
        num_classes: int = 21,
        transforms: Callable | None = None,
        download: bool = False,
    ) -> None:
        if download:
            download_voc(root, year)
        images, masks = voc_split_files(root, image_set, year)
        _require_files(images, masks, voc_split_file(root, image_set, year))
        super().__init__(images, masks, num_classes, transforms)
        self.image_set = image_set
        self.year = year


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
            raise _download_failed("SBD", err, _where_sbd_goes(sbd_root)) from err
    if not split_file.is_file():
        raise DataError(f"SBD split file {split_file} does not exist; " + _where_sbd_goes(sbd_root))
    sbd = SBDataset(str(sbd_root), image_set=image_set, mode="segmentation")
    _require_files(sbd.images, sbd.masks, split_file)
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
        _require_files(voc_images, voc_masks, voc_split_file(root, "train", year))
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
