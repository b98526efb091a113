"""mobilevit_edu: the companion package of the course "MobileViT from scratch".

Every piece of code the chapters teach lives here once:

- conv.py      chapter 1  conv2d_unfold: a convolution as unfold -> matmul -> fold
- layers.py    chapters 2-3  ConvNormAct, InvertedResidual (MV2), MultiHeadSelfAttention, TransformerLayer
- patches.py   chapter 4  unfold_patches / fold_patches: (B, C, H, W) <-> (B, P, N, C)
- block.py     chapter 5  MobileViTBlock: local_rep -> global_rep -> fusion
- models.py    chapter 6  MobileViT, its configs (XXS, XS, S) and mobilevit_xxs/xs/s()
- convert.py   weights from timm: convert_timm_state_dict (v1), convert_timm_v2_state_dict (v2)
- profile.py   count_parameters, count_macs, measure_latency
- data.py      chapters 7, 11  generated data sets (a task that needs global context; segmentation)
- train.py     chapter 7  fit(): AdamW, warm-up + cosine, label smoothing, EMA, multi-scale sampler
- folder.py    chapter 7  an image folder for fit(): decoding in DataLoader workers, random-resized crop + flip
- cli.py       chapter 7  the training command, python -m mobilevit_edu.train (needs the `train` extra)
- pretrained.py chapter 8  the official ImageNet weights (online) or a local file, and preprocessing
- explain.py   chapter 8  stage outputs, attention maps, effective receptive field
- deploy.py    chapter 9  fuse (BatchNorm folded), gather_patches, export_onnx, ONNX Runtime, latency by operation
- attention_v2.py, models_v2.py  chapter 10  MobileViTv2: separable self-attention, its block and networks
- segmentation.py chapter 11  ASPP, DeepLabV3, mean IoU
- checks/      the exercises' checks; viz.py, viz_patches.py, widgets.py  the figures and explorers
"""

from .block import MobileViTBlock
from .conv import conv2d_unfold, conv_output_size
from .convert import convert_timm_state_dict, convert_timm_v2_state_dict
from .layers import ConvNormAct, InvertedResidual, MultiHeadSelfAttention, TransformerLayer, make_divisible
from .models import CONFIGS, S, XS, XXS, MobileViT, MobileViTConfig, StageConfig, mobilevit_s, mobilevit_xs, mobilevit_xxs
from .patches import fold_patches, unfold_patches
from .profile import count_macs, count_parameters, measure_latency
from .attention_v2 import SeparableSelfAttention, separable_self_attention
from .models_v2 import MobileViTv2, MobileViTv2Config, mobilevitv2

__version__ = "0.1.0"
