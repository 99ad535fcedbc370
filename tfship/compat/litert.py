"""LiteRT internals: the generated FlatBuffer schema classes that read and rewrite
.tflite files (op lists, weights placed after the FlatBuffer)."""
from __future__ import annotations

from tfship.compat import Internal, Shim

_FLATBUFFER = "reading and rewriting .tflite FlatBuffers"

SHIM = Shim("ai-edge-litert", {
    "schema_py_generated": Internal("ai_edge_litert.schema_py_generated", "", _FLATBUFFER),
    "model_t": Internal("ai_edge_litert.schema_py_generated", "ModelT.InitFromPackedBuf", _FLATBUFFER),
    "builtin_operator": Internal("ai_edge_litert.schema_py_generated", "BuiltinOperator", _FLATBUFFER),
    "tensor_type": Internal("ai_edge_litert.schema_py_generated", "TensorType", _FLATBUFFER),
})

__getattr__ = SHIM.module_attribute  # `from tfship.compat.litert import schema_py_generated as schema`
