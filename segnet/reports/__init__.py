"""The parts of the markdown reports that scripts/evaluate.py and training's run report share:
the per-class table of a confusion matrix, the hardest images (lowest per-image mIoU) with their
pictures, and the curves of a run's metrics. Knows nothing of Hydra or Lightning."""
