"""Pascal VOC: class names, palette, ignore label, and datasets in VOC's on-disk layout.

Paths follow torchvision's ``VOCSegmentation`` (which also downloads VOC), but split files are
read here, so any split name works (``test``, ``my_split``), not only train/val/trainval.
Pixels are decoded by :mod:`segnet.data.images`, so bad files raise :class:`DataError` naming
them. SBD and the "trainaug" set are in :mod:`segnet.data.sbd`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import VOCSegmentation
from torchvision.datasets.voc import DATASET_YEAR_DICT
from torchvision.transforms.v2 import functional as F

from segnet.data.classes import IGNORE_INDEX
from segnet.data.images import DataError, read_image, read_mask, read_sbd_mask, require_same_size

__all__ = [
    "SegmentationPairs",
    "VOCSegmentationDataset",
    "download_voc",
    "download_failed",
    "load_pair",
    "require_files",
    "require_voc_dir",
    "voc_dir",
    "voc_split_file",
    "voc_split_files",
]


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


def download_failed(what: str, err: Exception, where: str) -> DataError:
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
        raise download_failed(f"VOC{year}", err, _where_voc_goes(root, year)) from err


def _absent(path: Path) -> str:
    """Why ``path`` is not a usable folder: "does not exist" or "is a file, not a folder"."""
    return "is a file, not a folder" if path.exists() else "does not exist"


def require_voc_dir(root: str | Path, year: str = "2012") -> None:
    """Raise DataError if ``root`` or root/VOCdevkit/VOC<year> is missing, saying where it goes."""
    if not Path(root).is_dir():
        raise DataError(
            f"dataset root {root} {_absent(Path(root))}; it must be the folder holding VOCdevkit/: "
            + _where_voc_goes(root, year)
        )
    if not voc_dir(root, year).is_dir():
        raise DataError(
            f"{voc_dir(root, year)} {_absent(voc_dir(root, year))}; " + _where_voc_goes(root, year)
        )


def voc_split_files(
    root: str | Path, image_set: str = "train", year: str = "2012"
) -> tuple[list[str], list[str]]:
    """Image paths (JPEGImages/<id>.jpg) and mask paths (SegmentationClass/<id>.png) of a split.

    The ids are the non-blank lines of ImageSets/Segmentation/<image_set>.txt, for any split
    name (torchvision's reader accepts only train, val and trainval).

    Raises:
        DataError: ``root``, its VOCdevkit or the split file is missing, unreadable or empty.
    """
    require_voc_dir(root, year)
    split_file = voc_split_file(root, image_set, year)
    if not split_file.is_file():
        raise DataError(f"split file {split_file} does not exist; " + _where_voc_goes(root, year))
    try:
        ids = [line.strip() for line in split_file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"split file {split_file}: cannot read it ({err})") from err
    base = voc_dir(root, year)
    ids = [i for i in ids if i]
    if not ids:
        # Training on it would do nothing and evaluating it would report null metrics.
        raise DataError(f"split file {split_file} lists no images")
    images = [str(base / "JPEGImages" / f"{i}.jpg") for i in ids]
    masks = [str(base / "SegmentationClass" / f"{i}.png") for i in ids]
    return images, masks


def require_files(images: list[str], masks: list[str], listed_in: str | Path) -> None:
    """Raise one DataError naming every missing image or mask (the first 10, and a count)."""
    missing = [p for pair in zip(images, masks, strict=True) for p in pair if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} files listed in {listed_in} are missing:\n  {shown}")


MaskReader = Callable[[str], np.ndarray]


def load_pair(
    image_path: str | Path,
    mask_path: str | Path,
    num_classes: int,
    mask_reader: MaskReader | None = None,
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Decode one sample: image uint8 (3, H, W) and mask uint8 (H, W), labels checked.

    ``mask_path`` is a palette/grayscale PNG of labels, or an SBD ``.mat`` annotation; or
    anything ``mask_reader(path) -> uint8 (H, W) labels`` reads (e.g. through a label map).
    """
    image = read_image(image_path)
    if mask_reader is not None:
        mask = mask_reader(str(mask_path))
    elif Path(mask_path).suffix == ".mat":
        mask = read_sbd_mask(mask_path, num_classes, IGNORE_INDEX)
    else:
        mask = read_mask(mask_path, num_classes, IGNORE_INDEX)
    require_same_size(image_path, image, mask_path, mask)
    return tv_tensors.Image(F.pil_to_tensor(image)), tv_tensors.Mask(torch.from_numpy(mask))


class SegmentationPairs(Dataset):
    """Samples from lists of image and mask files, decoded by :func:`load_pair`.

    Items are ``(image, mask)``: ``tv_tensors.Image`` uint8 (3, H, W) and ``tv_tensors.Mask``
    uint8 (H, W), or whatever ``transforms(image, mask)`` makes of them. ``mask_reader``
    (picklable, for loader workers) replaces the default reading of masks as labels.
    """

    def __init__(
        self,
        images: list[str],
        masks: list[str],
        num_classes: int,
        transforms: Callable | None = None,
        mask_reader: MaskReader | None = None,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images = images
        self.masks = masks
        self.ids = [Path(p).stem for p in images]
        self.num_classes = num_classes
        self.transforms = transforms
        self.mask_reader = mask_reader

    def untransformed(self) -> SegmentationPairs:
        """The same samples as decoded, without ``transforms``."""
        return SegmentationPairs(self.images, self.masks, self.num_classes, None, self.mask_reader)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, mask = load_pair(
            self.images[index], self.masks[index], self.num_classes, self.mask_reader
        )
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask


class VOCSegmentationDataset(SegmentationPairs):
    """A split of Pascal VOC segmentation (or any dataset in VOC's layout and its own classes).

    Args:
        root: the folder holding ``VOCdevkit/`` (images in root/VOCdevkit/VOC2012/JPEGImages).
        image_set: the split, any name: ImageSets/Segmentation/<image_set>.txt lists its ids.
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
        require_files(images, masks, voc_split_file(root, image_set, year))
        super().__init__(images, masks, num_classes, transforms)
        self.image_set = image_set
        self.year = year
