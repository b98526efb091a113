"""mobilevit_edu: the companion package of the course "MobileViT from scratch".

Every piece of code the chapters teach lives here once:

- conv.py      chapter 1  conv2d_unfold: a convolution as unfold -> matmul -> fold
- layers.py    chapters 2-3  ConvNormAct, InvertedResidual (MV2), MultiHeadSelfAttention, TransformerLayer
- patches.py   chapter 4  unfold_patches / fold_patches: (B, C, H, W) <-> (B, P, N, C)
- block.py     chapter 5  MobileViTBlock: local_rep -> global_rep -> fusion
- models.py    chapter 6  MobileViT, its configs (XXS, XS, S) and mobilevit_xxs/xs/s()
- convert.py   weights from timm: convert_timm_state_dict
- profile.py   count_parameters, count_macs, measure_latency
"""

from .block import MobileViTBlock
from .conv import conv2d_unfold, conv_output_size
from .convert import convert_timm_state_dict
from .layers import ConvNormAct, InvertedResidual, MultiHeadSelfAttention, TransformerLayer, make_divisible
from .models import CONFIGS, S, XS, XXS, MobileViT, MobileViTConfig, StageConfig, mobilevit_s, mobilevit_xs, mobilevit_xxs
from .patches import fold_patches, unfold_patches
from .profile import count_macs, count_parameters, measure_latency

__version__ = "0.1.0"
