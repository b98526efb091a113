"""A MobileViT with every kind of block of the real networks (MV2 blocks, a MobileViT block at two stages),
small enough to export to ONNX in seconds: the tests of the exports share it."""

from dataclasses import replace

import mobilevit_edu as me

TINY = replace(
    me.XXS,
    name="tiny",
    stages=(
        me.StageConfig(16, num_mv2=1, stride=1),
        me.StageConfig(16, num_mv2=1, stride=2),
        me.StageConfig(24, num_mv2=1, stride=2, transformer_dim=32, depth=1),
        me.StageConfig(24, num_mv2=1, stride=2),
        me.StageConfig(32, num_mv2=1, stride=2, transformer_dim=32, depth=1),
    ),
    final_channels=64,
    num_classes=10,
)
