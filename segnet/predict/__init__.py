"""Prediction: the :class:`~segnet.predict.segmenter.Segmenter` facade (the one predict path of
infer, evaluate and serve), the :class:`~segnet.predict.predictor.Predictor` behind it (whole
image, sliding windows, test-time augmentation) and the sliding-window arithmetic.

Knows nothing of Hydra or Lightning: a deployed process imports neither.
"""
