"""The corpus: real architectures, built by code (nothing downloaded), exported on
every target by `make corpus` (configs in configs/corpus/, table in docs/corpus.md).

Keras applications keep their stock layers with `weights=None` and expose
`include_top=False, pooling="avg"` features (random weights give a flat softmax, but
pooled features keep their spread); the other models train for a few seconds on
generated data so their outputs are not degenerate. Input resolutions are reduced
(32x32 to 71x71) so a full run fits two CPUs.
"""
