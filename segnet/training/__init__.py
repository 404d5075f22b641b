"""Training: the LightningModule (:mod:`segnet.training.system`) that fits an FCN."""
