"""The stamp CNN (Keras functional API) and its entropy-regularised loss.

Architecture, after Carrasco-Davis et al. (2021), scaled down so that CPU inference does not dominate a worker:

    image (21, 21, 3) -> RotationStack (x4, shared weights) -> conv 3x3 (f1) -> conv 3x3 (f1) -> max-pool 2
      -> conv 3x3 (f2) -> conv 3x3 (f2) -> max-pool 2 -> flatten -> dense (d) -> CyclicPool (mean of the 4)
    metadata (F,) -> standardisation (mean / std adapted on the training set, stored in the model)
    concat -> dense (d) -> dropout -> dense (d) -> softmax over SN, AGN, VS, asteroid, bogus

Loss: cross-entropy minus beta times the entropy of the predicted distribution. The entropy term (the paper's
regulariser) penalises over-confident outputs, so probabilities stay informative for ranking candidates (ALeRCE's
SN Hunter sorts by P(SN)); ALeRCE's training scripts use beta between 0.3 and 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import layers, ops

from alert_broker.classifiers.stamp.layers import CyclicPool, RotationStack
from alert_broker.classifiers.stamp.preprocess import CROP_SIZE
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES


@dataclass(frozen=True)
class CNNConfig:
    """Sizes of the network; stored in the model's metadata so a version says what it is."""

    filters1: int = 16
    filters2: int = 32
    dense: int = 64
    dropout: float = 0.3
    beta: float = 0.5  # entropy regularisation weight
    learning_rate: float = 1e-3

    def as_dict(self) -> dict:
        return asdict(self)


@keras.saving.register_keras_serializable(package="broker_stamp")
def entropy_regularised_loss(y_true, y_pred, beta: float = 0.5):
    """Mean over the batch of CE(y, p) - beta * H(p), with y one-hot (or soft) and p the softmax output."""
    eps = 1e-7
    p = ops.clip(y_pred, eps, 1.0)
    ce = -ops.sum(y_true * ops.log(p), axis=-1)
    entropy = -ops.sum(p * ops.log(p), axis=-1)
    return ce - beta * entropy


def make_loss(beta: float):
    def loss(y_true, y_pred):
        return entropy_regularised_loss(y_true, y_pred, beta)

    loss.__name__ = f"ce_minus_{beta:g}_entropy"
    return loss


def build_model(
    n_meta: int, config: CNNConfig = CNNConfig(), meta_sample: np.ndarray | None = None, size: int = CROP_SIZE
) -> keras.Model:
    """The uncompiled stamp CNN. ``meta_sample`` (training metadata) sets the standardisation of the metadata;
    without it the metadata pass unscaled (tests of shapes only)."""
    img = keras.Input((size, size, 3), name="image")
    meta = keras.Input((n_meta,), name="metadata")
    x = RotationStack(name="rotations")(img)
    for i, f in enumerate((config.filters1, config.filters1, None, config.filters2, config.filters2, None)):
        if f is None:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        else:
            x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense, activation="relu", name="image_dense")(x)
    x = CyclicPool(name="cyclic_pool")(x)
    if meta_sample is not None:
        norm = layers.Normalization(name="metadata_norm")
        norm.adapt(np.asarray(meta_sample, dtype=np.float32))
    else:
        norm = layers.Normalization(mean=np.zeros(n_meta), variance=np.ones(n_meta), name="metadata_norm")
    m = norm(meta)
    h = layers.Concatenate(name="concat")([x, m])
    h = layers.Dense(config.dense, activation="relu", name="dense1")(h)
    h = layers.Dropout(config.dropout, name="dropout")(h)
    h = layers.Dense(config.dense, activation="relu", name="dense2")(h)
    out = layers.Dense(len(STAMP_CLASSES), activation="softmax", name="probabilities")(h)
    return keras.Model([img, meta], out, name="stamp_cnn")


def compile_model(model: keras.Model, config: CNNConfig, learning_rate=None) -> keras.Model:
    """Adam on the entropy-regularised loss; ``learning_rate`` (a float or a schedule) overrides the config's."""
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate if learning_rate is None else learning_rate),
        loss=make_loss(config.beta),
        metrics=["accuracy"],
    )
    return model
