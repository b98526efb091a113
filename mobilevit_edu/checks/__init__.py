"""Instant feedback for the exercises: `check_*(your_function_or_class)`.

Each check prints "✓ ..." when your answer is right, "not implemented yet" while your stub still
raises NotImplementedError, and raises CheckFailed (an AssertionError) saying what is wrong otherwise.
`randomize_batchnorm(module, generator)` is the checks' way to make BatchNorm layers non-trivial; the
chapters use it too.
"""

from ._common import CheckFailed, randomize_batchnorm
from .cnn import check_conv2d_unfold, check_inverted_residual, check_mv2_cost, check_receptive_field
from .attention import check_scaled_dot_product_attention, check_transformer_layer, check_transformer_layer_macs
from .deploy import check_fold_batchnorm, check_pixel_order
from .mobilevit import check_fold_patches, check_mobilevit_block, check_mobilevit_config, check_mobilevit_forward, check_unfold_patches
from .mobilevit import check_attention_partners, check_mobilevit_block_macs, check_stage_sizes
from .training import check_batch_size_for, check_lr_schedule, check_multiscale_batches
from .separable import check_separable_self_attention
from .segmentation import check_aspp_forward, check_mean_iou
from .attention_maps import check_attention_map, check_attention_weights, show_attention_maps
from .tasks_4_6 import check_block_reach, check_global_rep_by_fold, check_parameters_from_config
from .experiments_7_9 import check_attention_counts, check_batch_size_rules, check_epochs_to_reach, check_r_half
from .experiments_10_11 import check_context_error, check_flag_reading, check_flag_summary
from .detection import check_box_iou, check_nms
