"""Weight interoperability with timm: one key map, kept in one place.

timm name (mobilevit_*)                     mobilevit_edu name
stem.conv / stem.bn                         stem.conv / stem.norm
stages.i.j.conv1_1x1 / conv2_kxk / conv3_1x1   stages.i.j.expand / depthwise / project   (MV2)
stages.i.j.conv_kxk / conv_1x1              stages.i.j.local_rep.conv_kxk / conv_1x1  (MobileViT block)
stages.i.j.transformer.k.* / norm           the same                                  (MobileViT block)
stages.i.j.conv_proj / conv_fusion          stages.i.j.conv_proj / fusion             (MobileViT block)
final_conv                                  final_conv
head.fc                                     head
every ConvNormAct's .bn                     .norm
"""

import re

# (pattern, replacement), applied in order to every key
TIMM_KEY_MAP = [
    (r"\.bn\.", ".norm."),
    (r"\.conv1_1x1\.", ".expand."),
    (r"\.conv2_kxk\.", ".depthwise."),
    (r"\.conv3_1x1\.", ".project."),
    (r"\.conv_kxk\.", ".local_rep.conv_kxk."),
    (r"\.conv_1x1\.", ".local_rep.conv_1x1."),
    (r"\.conv_fusion\.", ".fusion."),
    (r"^head\.fc\.", "head."),
]

_KNOWN = re.compile(r"^(stem|stages|final_conv|head)\.")


def timm_key_to_edu(key):
    """Map one timm state-dict key to the name of the same tensor in `mobilevit_edu.MobileViT`."""
    if not _KNOWN.match(key):
        raise ValueError(f"state_dict key {key!r} is not a timm MobileViT (v1) key")
    for pattern, replacement in TIMM_KEY_MAP:
        key = re.sub(pattern, replacement, key)
    return key


def convert_timm_state_dict(state_dict):
    """A timm `mobilevit_xxs/xs/s` state dict -> one that `mobilevit_edu.MobileViT` loads strictly.

    Tensors are shared, not copied. Example::

        model.load_state_dict(convert_timm_state_dict(timm_model.state_dict()))
    """
    return {timm_key_to_edu(k): v for k, v in state_dict.items()}


# ------------------------------------------------------------------------------------ MobileViTv2
# timm's mobilevitv2_* use the same names as v1 for everything v2 shares with it (stem, MV2 blocks,
# conv_kxk, conv_1x1, transformer.k.norm1/norm2/mlp.fc1/mlp.fc2, norm, conv_proj, head.fc), so the same
# TIMM_KEY_MAP applies; the separable attention's attn.qkv_proj / attn.out_proj keep their names.
_V1_ONLY = re.compile(r"(^final_conv\.|\.conv_fusion\.|\.attn\.qkv\.|\.attn\.proj\.)")


def convert_timm_v2_state_dict(state_dict):
    """A timm `mobilevitv2_050 ... _200` state dict -> one that `mobilevit_edu.models_v2.MobileViTv2`
    loads strictly. Tensors are shared, not copied."""
    converted = {}
    for key, value in state_dict.items():
        if not _KNOWN.match(key) or _V1_ONLY.search(key):
            raise ValueError(f"state_dict key {key!r} is not a timm MobileViTv2 key (mobilevitv2_050 ... _200)")
        for pattern, replacement in TIMM_KEY_MAP:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted
