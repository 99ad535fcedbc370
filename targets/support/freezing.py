"""Freezing a traced function into one GraphDef with TensorFlow's own machinery, where
the caller may put a stand-in in place of any captured value (it is then never read)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def frozen_graph_def(concrete: Any, stand_in: Callable[[str, Any], Any] | None = None, *, lower_control_flow: bool, aggressive_inlining: bool) -> Any:
    """The function frozen into one GraphDef: variables and captured tensors become
    constants. `stand_in(name, value)` (name: the capture's node; value: the tf.Variable
    or captured tensor) returns what to freeze instead, or None for the value itself.
    Captured resources that are not variables (tables) are left as they are."""
    import tensorflow as tf

    from tfship.compat import tensorflow as internals

    class ConverterData(internals.converter_data):
        def _build_tensor_data(self):
            variables = {id(v.handle): v for v in self._func.graph.variables}
            for index, (external, internal) in enumerate(internals.captures(self._func.graph)):
                name = internal.name.split(":")[0]
                if not self._should_convert(name):
                    continue
                source = variables.get(id(external))
                if source is None and external.dtype == tf.resource:
                    continue  # a resource that is not a variable (a table): left as it is
                value = source if source is not None else external
                data = stand_in(name, value) if stand_in is not None else None
                if data is None:
                    data = np.array(self._eval(value))
                self._tensor_data[name] = internals.tensor_data(numpy=data, dtype=value.dtype.as_datatype_enum, index=index)

    data = ConverterData(func=concrete, lower_control_flow=lower_control_flow, aggressive_inlining=aggressive_inlining)
    graph_def, _ = internals.replace_variables(converter_data=data)
    return graph_def
