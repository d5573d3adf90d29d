"""resgraph-cbam: the Convolutional Block Attention Module (Woo et al. 2018) as a resgraph plugin op.

The example plugin of docs/plugins.md: `ops.py` holds the op (what resgraph validates, counts and
lowers), `modules.py` the torch module it lowers to. Neither imports torch until a network is compiled.
"""
