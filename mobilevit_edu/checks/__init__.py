"""Instant feedback for the exercises: `check_*(your_function_or_class)`.

Each check prints "✓ ..." when your answer is right, "not implemented yet" while your stub still
raises NotImplementedError, and raises CheckFailed (an AssertionError) saying what is wrong otherwise.
`randomize_batchnorm(module, generator)` is the checks' way to make BatchNorm layers non-trivial; the
chapters use it too.
"""

from ._common import CheckFailed, randomize_batchnorm
from .cnn import check_conv2d_unfold, check_inverted_residual
from .attention import check_scaled_dot_product_attention, check_transformer_layer
from .mobilevit import check_fold_patches, check_mobilevit_block, check_mobilevit_config, check_mobilevit_forward, check_unfold_patches
