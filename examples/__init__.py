"""Example models that tfship builds, exports and checks.

Each module exposes ``build(...)``: ``affine`` and ``threshold`` return plain
``tf.Module`` objects; ``image_cnn`` (Keras 3) and ``multi_io`` (tf-keras)
train a model and save it to a path. ``python -m examples build`` writes the
trained ones to ``examples/build/``.
"""

EXAMPLES = ("affine", "threshold", "image_cnn", "multi_io")
