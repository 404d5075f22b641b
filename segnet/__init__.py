"""segnet: FCN semantic segmentation. ``from segnet import Segmenter`` to use a trained model."""

__all__ = ["Segmenter"]


def __getattr__(name: str):
    # Lazy: importing a submodule (segnet.data, segnet.layers) does not load the model runtime.
    if name == "Segmenter":
        from segnet.predict.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'segnet' has no attribute {name!r}")
