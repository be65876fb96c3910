"""The two layers that make the CNN rotation invariant (Dieleman et al. 2016; Carrasco-Davis et al. 2021).

:class:`RotationStack` stacks the image and its 90, 180 and 270 degree rotations along the batch axis, so one
convolution stack with shared weights sees all four; :class:`CyclicPool` averages the four feature vectors of each
image. Rotating the input by 90 degrees only permutes the four copies, and the mean does not depend on their order,
so the output is invariant by construction (to float rounding), whatever the convolutions learn.

They are registered Keras layers (not Lambda layers) so a saved ``.keras`` model loads in safe mode.
"""

from __future__ import annotations

import keras
from keras import ops

N_ROTATIONS = 4


def rot90(x):
    """Rotate an NHWC batch by 90 degrees counter-clockwise in the (H, W) plane (``np.rot90(axes=(1, 2))``)."""
    return ops.flip(ops.transpose(x, (0, 2, 1, 3)), axis=1)


@keras.saving.register_keras_serializable(package="broker_stamp")
class RotationStack(keras.layers.Layer):
    """(N, H, W, C) square images -> (4N, H, W, C): all images at 0 deg, then all at 90, 180 and 270 deg."""

    def call(self, x):
        r1 = rot90(x)
        r2 = rot90(r1)
        r3 = rot90(r2)
        return ops.concatenate([x, r1, r2, r3], axis=0)

    def compute_output_shape(self, input_shape):
        n = input_shape[0]
        return (None if n is None else N_ROTATIONS * n, *input_shape[1:])


@keras.saving.register_keras_serializable(package="broker_stamp")
class CyclicPool(keras.layers.Layer):
    """(4N, F) features in :class:`RotationStack` order -> (N, F): the mean over each image's four rotations."""

    def call(self, y):
        return ops.mean(ops.reshape(y, (N_ROTATIONS, -1, y.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape):
        n = input_shape[0]
        return (None if n is None else n // N_ROTATIONS, input_shape[-1])
