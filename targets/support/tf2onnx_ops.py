"""TF ops tf2onnx 1.17 has no handler for, mapped onto ONNX ops here.

Passed to tf2onnx as `custom_op_handlers` (its documented extension point), so they
apply to every graph tfship converts, Loop and If bodies included, and never to
anything else in the process.

  Erfc  Keras 3's exact GELU (`activation="gelu"`, ConvNeXt, Transformer feed-forward
        blocks) lowers to Erfc. Erfc(x) = 1 - Erf(x), with ONNX Erf (opset 9+). In
        float32 the difference loses relative precision where Erfc(x) < ~1e-7
        (x > ~3.8): the absolute error stays below float32's epsilon, which is what
        GELU (0.5 * x * Erfc(-x / sqrt 2)) and parity see.
"""
from __future__ import annotations

import numpy as np


def _erfc(ctx, node, name, args):
    """Erfc(x) -> Sub(1, Erf(x)): the node itself becomes the Erf, a Sub follows it."""
    from tfship.compat.tf2onnx import make_name, map_onnx_to_numpy_type

    dtype = map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    node.type = "Erf"
    one = ctx.make_const(make_name(f"{name}_one"), np.array(1, dtype=dtype))
    erf_output = node.output[0]
    sub = ctx.insert_new_node_on_output("Sub", erf_output, name=make_name(f"{name}_erfc"), inputs=[one.output[0], erf_output])
    ctx.copy_shape(erf_output, sub.output[0])
    ctx.set_dtype(sub.output[0], ctx.get_dtype(erf_output))
    return node


# tf2onnx's custom_op_handlers form: TF op -> (handler(ctx, node, name, args), args).
HANDLERS = {"Erfc": (_erfc, [])}


def handlers() -> dict:
    """A fresh copy for one conversion (tf2onnx may add to the dict it is given)."""
    return dict(HANDLERS)
