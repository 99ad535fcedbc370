"""TensorFlow internals: freezing with stand-ins, a traced function's captures, the
TFLite converter's buffer offset and error type, the quantization debugger's input
order, the protocol buffers of saved_model.pb and GraphDefs, and the compiler IR
stages of a jit_compile function."""
from __future__ import annotations

from typing import Any

from tfship.compat import Internal, Shim, missing

_C2C = "tensorflow.python.framework.convert_to_constants"
_FREEZE = "freezing a traced function with stand-ins for its weights"

SHIM = Shim("tensorflow", {
    "converter_data": Internal(_C2C, "_FunctionConverterDataInEager", _FREEZE),
    # tfship overrides this method and calls the other two: a rename would skip the override silently.
    "build_tensor_data": Internal(_C2C, "_FunctionConverterDataInEager._build_tensor_data", _FREEZE),
    "should_convert": Internal(_C2C, "_FunctionConverterDataInEager._should_convert", _FREEZE),
    "eval": Internal(_C2C, "_FunctionConverterDataInEager._eval", _FREEZE),
    "tensor_data": Internal(_C2C, "_TensorData", _FREEZE),
    "replace_variables": Internal(_C2C, "_replace_variables_by_constants", _FREEZE),
    "convert_variables_to_constants_v2": Internal(_C2C, "convert_variables_to_constants_v2", "freezing a function for layer localization"),
    "captures": Internal("tensorflow.python.framework.func_graph", "FuncGraph.captures", "reading a traced function's captured weights"),
    "ConverterError": Internal("tensorflow.lite.python.convert_phase", "ConverterError", "explaining TFLite converter failures"),
    "saved_model_pb2": Internal("tensorflow.core.protobuf.saved_model_pb2", "", "reading saved_model.pb"),
    "attr_value_pb2": Internal("tensorflow.core.framework.attr_value_pb2", "", "editing GraphDef node attributes"),
    "node_def_pb2": Internal("tensorflow.core.framework.node_def_pb2", "", "editing GraphDef nodes"),
    "types_pb2": Internal("tensorflow.core.framework.types_pb2", "", "editing GraphDef dtypes"),
    "tensor_shape_pb2": Internal("tensorflow.core.framework.tensor_shape_pb2", "", "editing GraphDef shapes"),
})


__getattr__ = SHIM.module_attribute  # `from tfship.compat.tensorflow import <internal>`


def captures(graph) -> list[tuple[Any, Any]]:
    """(external, internal) of every value a FuncGraph captured, in the order it takes them."""
    SHIM.check()
    return list(graph.captures)


def use_buffer_offset(converter) -> None:
    """Weights after the FlatBuffer (a file past 2 GB); without the attribute the
    converter would ignore the setting silently, so its absence is an error."""
    SHIM.attribute(converter, "_experimental_use_buffer_offset", "writing weights after the FlatBuffer")
    converter._experimental_use_buffer_offset = True


def debugger_input_details(debugger) -> list[dict]:
    """The input order of the quantization debugger's own quantized interpreter."""
    return SHIM.attribute(debugger, "_quant_interpreter", "feeding the quantization debugger in its input order").get_input_details()


def compiler_ir(getter, stage: str) -> str:
    """`getter(stage=stage)`, `getter` from `experimental_get_compiler_ir`. A stage this
    TensorFlow does not know (measured: 2.18 has no 'stablehlo') is a MissingInternal."""
    try:
        return getter(stage=stage)
    except ValueError as exc:
        if "Invalid stage selected" not in str(exc):
            raise
        raise missing("tensorflow", f"stage {stage!r} of tf.function.experimental_get_compiler_ir", "writing the compiler IR of the xla and tpu targets") from exc
