"""The trained stamp CNN (Keras) written as an ONNX graph, so workers serve it with ONNX Runtime, not TensorFlow.

Why: TensorFlow is there to *train* the network. Serving it with TensorFlow costs each Dask worker ~4 s and
~0.5 GB to start and a traced function per process; ONNX Runtime starts in a fraction of a second and runs the
same small graph as fast or faster. The conversion is written out by hand for the one architecture this package
builds (``model.build_model``), from the layers' weights, instead of through a generic converter: the graph is
small, every step is visible here, and a layer this code does not know is an error, never a silent mistranslation.
``tests/unit/test_stamp_onnx.py`` checks the two runtimes give the same probabilities (to 1e-5) on real stamps.

The graph, in ONNX's NCHW layout (Keras works in NHWC):

    image (N, H, W, 3) -> NCHW -> [x, rot90 x, rot180 x, rot270 x] stacked on the batch axis (RotationStack)
      -> conv 3x3 same + relu (x2) -> max-pool 2 -> conv 3x3 same + relu (x2) -> max-pool 2
      -> back to NHWC and flatten (Keras' Flatten order) -> dense + relu -> mean over the 4 rotations (CyclicPool)
    metadata (N, F) -> (x - mean) / max(sqrt(variance), 1e-7)  (Keras' Normalization)
    concat -> dense + relu -> dense + relu (dropout is the identity at inference) -> dense -> softmax

A Keras rotation by 90 degrees (``layers.rot90``) is transpose(H, W) then flip(H); in NCHW the same is
transpose of the last two axes, then a reversed slice of axis 2.
"""

from __future__ import annotations

import numpy as np

#: The ONNX opset the graph is written in (ReduceMean takes its axes as an attribute up to 17).
OPSET = 17
#: Keras' backend epsilon: the floor of a Normalization layer's standard deviation.
KERAS_EPSILON = 1e-7


class UnsupportedLayer(ValueError):
    """The Keras model holds a layer the exporter does not translate."""


def _layers_in_order(model) -> list:
    """The model's layers along the image branch then the head, as ``build_model`` wires them."""
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def keras_to_onnx(model):
    """An ``onnx.ModelProto`` computing the same softmax as the Keras stamp CNN ``model`` (inputs ``image``
    (N, H, W, 3) float32 and ``metadata`` (N, F) float32, output ``probabilities`` (N, K))."""
    import onnx  # lazy: only exporting a model needs the ONNX builder
    from onnx import TensorProto, helper, numpy_helper  # lazy: as above

    nodes: list = []
    inits: list = []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    size = model.get_layer("rotations").input.shape[1]
    n_meta = model.get_layer("metadata_norm").input.shape[-1]
    x = node("Transpose", ["image"], "nchw", perm=[0, 3, 1, 2])
    starts, ends = (
        const("flip_starts", np.array([-1], np.int64)),
        const("flip_ends", np.array([-(2**63)], np.int64)),
    )
    axes, steps = const("flip_axes", np.array([2], np.int64)), const("flip_steps", np.array([-1], np.int64))
    rots = [x]
    for k in range(1, 4):
        t = node("Transpose", [rots[-1]], f"rot{k}_t", perm=[0, 1, 3, 2])
        rots.append(node("Slice", [t, starts, ends, axes, steps], f"rot{k}"))
    x = node("Concat", rots, "rotations", axis=0)

    meta = "metadata"
    for layer in _layers_in_order(model):
        kind, name = type(layer).__name__, layer.name
        cfg = layer.get_config()
        if kind in ("RotationStack",):
            continue
        if kind == "Conv2D":
            if cfg["padding"] != "same" or tuple(cfg["strides"]) != (1, 1) or cfg["activation"] != "relu":
                raise UnsupportedLayer(f"{name}: only 'same' stride-1 relu convolutions are exported")
            w, b = layer.get_weights()
            kh, kw = w.shape[:2]
            x = node(
                "Conv",
                [
                    x,
                    const(f"{name}_w", np.transpose(w, (3, 2, 0, 1)).astype(np.float32)),
                    const(f"{name}_b", b),
                ],
                f"{name}_conv",
                kernel_shape=[kh, kw],
                pads=[kh // 2, kw // 2, kh // 2, kw // 2],
            )
            x = node("Relu", [x], name)
        elif kind == "MaxPooling2D":
            pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"])
            if cfg["padding"] != "valid":
                raise UnsupportedLayer(f"{name}: only 'valid' max-pooling is exported")
            x = node("MaxPool", [x], name, kernel_shape=list(pool), strides=list(strides))
        elif kind == "Flatten":
            x = node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])  # Keras flattens NHWC
            x = node("Flatten", [x], name, axis=1)
        elif kind == "Dense":
            w, b = layer.get_weights()
            act = cfg["activation"]
            y = node("MatMul", [x, const(f"{name}_w", w.astype(np.float32))], f"{name}_mm")
            y = node("Add", [y, const(f"{name}_b", b.astype(np.float32))], f"{name}_lin")
            if act == "relu":
                y = node("Relu", [y], name)
            elif act == "softmax":
                y = node("Softmax", [y], name, axis=-1)
            elif act != "linear":
                raise UnsupportedLayer(f"{name}: activation {act!r} is not exported")
            x = y
        elif kind == "CyclicPool":
            r = node(
                "Reshape",
                [x, const("cyclic_shape", np.array([4, -1, int(layer.input.shape[-1])], np.int64))],
                "cyc_r",
            )
            x = node("ReduceMean", [r], name, axes=[0], keepdims=0)
        elif kind == "Normalization":
            mean, var = (np.asarray(v, np.float32).reshape(-1) for v in layer.get_weights()[:2])
            denom = np.maximum(np.sqrt(var), np.float32(KERAS_EPSILON)).astype(np.float32)
            m = node("Sub", ["metadata", const(f"{name}_mean", mean)], f"{name}_sub")
            meta = node("Div", [m, const(f"{name}_std", denom)], name)
        elif kind == "Concatenate":
            x = node("Concat", [x, meta], name, axis=1)
        elif kind == "Dropout":
            continue
        else:
            raise UnsupportedLayer(f"layer {name} ({kind}) is not exported")
    out_dim = model.output.shape[-1]
    graph = helper.make_graph(
        nodes,
        "stamp_cnn",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 3]),
            helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["N", n_meta]),
        ],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", out_dim])],
        initializer=inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="alert-broker"
    )
    proto.ir_version = 8  # readable by every ONNX Runtime that runs opset 17
    onnx.checker.check_model(proto)
    return proto


def keras_to_onnx_bytes(model) -> bytes:
    """:func:`keras_to_onnx` serialised (what the registry stores as ``model.onnx``)."""
    return keras_to_onnx(model).SerializeToString()
