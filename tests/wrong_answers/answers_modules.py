"""Answers to the module exercises (chapters 2, 3, 5), written as students would write them: wrong ones,
each with the words a hint that names its mistake contains, and right ones written another way.

Each answer subclasses the package's module only to inherit the skeleton's __init__ (the submodule names
the exercise gives); its forward is the student's."""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import mobilevit_edu as me
from mobilevit_edu.checks import check_inverted_residual, check_mobilevit_block, check_transformer_layer


# ============================================================================ chapter 2: the MV2 block
def _cna(m, x, act=None, norm=True):
    """A ConvNormAct written out by hand: conv, norm (or not), then `act` (default: the module's own)."""
    if isinstance(m, nn.Identity):
        return x
    y = m.conv(x)
    y = m.norm(y) if norm else y
    return (m.act(y) if act is None else act(y))


def mv2(forward):
    return type(forward.__name__, (me.InvertedResidual,), {"forward": forward})


def _finish(self, x, y):
    return x + y if self.use_residual else y


@mv2
def MV2ReLU6(self, x):
    h = _cna(self.expand, x, F.relu6)
    h = _cna(self.depthwise, h, F.relu6)
    return _finish(self, x, self.project(h))


@mv2
def MV2ReLU(self, x):
    h = _cna(self.expand, x, torch.relu)
    h = _cna(self.depthwise, h, torch.relu)
    return _finish(self, x, self.project(h))


@mv2
def MV2GELU(self, x):
    h = _cna(self.expand, x, F.gelu)
    h = _cna(self.depthwise, h, nn.GELU())
    return _finish(self, x, self.project(h))


@mv2
def MV2ReLU6OnlyDepthwise(self, x):
    h = self.expand(x)
    h = _cna(self.depthwise, h, nn.ReLU6())
    return _finish(self, x, self.project(h))


@mv2
def MV2NoDepthwiseBN(self, x):
    h = self.expand(x)
    h = _cna(self.depthwise, h, norm=False)
    return _finish(self, x, self.project(h))


@mv2
def MV2NoProjectBN(self, x):
    h = self.depthwise(self.expand(x))
    return _finish(self, x, self.project.conv(h))


@mv2
def MV2NoResidual(self, x):
    return self.project(self.depthwise(self.expand(x)))


@mv2
def MV2ResidualOnlyWhenStride1(self, x):
    y = self.project(self.depthwise(self.expand(x)))
    return x + y if self.depthwise.conv.stride == (1, 1) else y


@mv2
def MV2SiLUAfterSum(self, x):
    y = self.project(self.depthwise(self.expand(x)))
    return F.silu(x + y) if self.use_residual else F.silu(y)


@mv2
def MV2ReLU6AfterProject(self, x):
    y = F.relu6(self.project(self.depthwise(self.expand(x))))
    return x + y if self.use_residual else y


@mv2
def MV2NoDepthwiseAct(self, x):
    h = self.expand(x)
    h = self.depthwise.norm(self.depthwise.conv(h))
    return _finish(self, x, self.project(h))


@mv2
def MV2InnerResidual(self, x):
    h = self.expand(x)
    h = h + self.depthwise(h) if self.depthwise.conv.stride == (1, 1) else self.depthwise(h)
    return _finish(self, x, self.project(h))


@mv2
def MV2ResidualIntoProjection(self, x):
    h = self.depthwise(self.expand(x))
    y = self.project.conv(h)
    if self.use_residual:
        y = y + x
    return self.project.norm(y)


@mv2
def MV2NoExpandBN(self, x):
    h = x if isinstance(self.expand, nn.Identity) else F.silu(self.expand.conv(x))
    return _finish(self, x, self.project(self.depthwise(h)))


MV2_WRONG = [
    ("ReLU6 instead of SiLU", MV2ReLU6, ["ReLU6"]),
    ("ReLU instead of SiLU", MV2ReLU, ["apply ReLU"]),
    ("GELU instead of SiLU", MV2GELU, ["GELU"]),
    ("ReLU6 in the depthwise step only", MV2ReLU6OnlyDepthwise, ["ReLU6"]),
    ("no BatchNorm in the depthwise step", MV2NoDepthwiseBN, ["self.depthwise.norm"]),
    ("no BatchNorm in the projection", MV2NoProjectBN, ["projection's BatchNorm", "self.project.norm"]),
    ("no residual", MV2NoResidual, ["residual"]),
    ("residual whenever stride 1", MV2ResidualOnlyWhenStride1, ["use_residual"]),
    ("SiLU after the sum", MV2SiLUAfterSum, ["after the residual", "projection is linear"]),
    ("ReLU6 after the projection", MV2ReLU6AfterProject, ["projection is linear"]),
    ("no activation after the depthwise conv", MV2NoDepthwiseAct, ["self.depthwise.act"]),
    ("a residual around the depthwise conv", MV2InnerResidual, ["sum of the output of `self.expand"]),
    ("x added before the projection's BatchNorm", MV2ResidualIntoProjection, ["before the projection's BatchNorm"]),
    ("no BatchNorm in the expansion", MV2NoExpandBN, ["self.expand.norm", "expansion's BatchNorm"]),
]


@mv2
def MV2ByHand(self, x):
    h = x
    if not isinstance(self.expand, nn.Identity):
        h = F.silu(self.expand.norm(self.expand.conv(h)))
    h = F.silu(self.depthwise.norm(self.depthwise.conv(h)))
    y = self.project.norm(self.project.conv(h))
    if self.use_residual:
        return x + y
    return y


@mv2
def MV2ShapeTest(self, x):
    y = self.project(self.depthwise(self.expand(x)))
    if y.shape == x.shape:
        y += x
    return y


@mv2
def MV2Loop(self, x):
    h = x
    for step in (self.expand, self.depthwise, self.project):
        h = step(h)
    return torch.add(h, x) if self.use_residual else h


MV2_RIGHT = [("written out by hand with F.silu", MV2ByHand), ("residual from the shapes, in place", MV2ShapeTest),
             ("a loop over the steps", MV2Loop)]

SETS = {"check_inverted_residual": (check_inverted_residual, MV2_WRONG, MV2_RIGHT)}


# ============================================================================ chapter 3: the transformer layer
def layer(forward):
    return type(forward.__name__, (me.TransformerLayer,), {"forward": forward})


def _attend(self, h, heads=None, scale="head", dim=-1):
    """Self-attention written out with the layer's own qkv and proj, as a student who read section 3.1 might."""
    heads = heads or self.attn.num_heads
    q, k, v = rearrange(self.attn.qkv(h), "b n (three h e) -> three b h n e", three=3, h=heads)
    scores = q @ k.transpose(-2, -1)
    if scale == "head":
        scores = scores / math.sqrt(q.shape[-1])
    elif scale == "width":
        scores = scores / math.sqrt(h.shape[-1])
    return self.attn.proj(rearrange(scores.softmax(dim=dim) @ v, "b h n e -> b n (h e)"))


@layer
def LayerPostNorm(self, x):
    x = self.norm1(x + self.attn(x))
    return self.norm2(x + self.mlp(x))


@layer
def LayerNoNorm1(self, x):
    x = x + self.attn(x)
    return x + self.mlp(self.norm2(x))


@layer
def LayerNoNorm2(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(x)


@layer
def LayerNoAttentionResidual(self, x):
    x = self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


@layer
def LayerNoMLPResidual(self, x):
    x = x + self.attn(self.norm1(x))
    return self.mlp(self.norm2(x))


@layer
def LayerGELU(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


@layer
def LayerReLU(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp.fc2(torch.relu(self.mlp.fc1(self.norm2(x))))


@layer
def LayerNoMLPActivation(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp.fc2(self.mlp.fc1(self.norm2(x)))


@layer
def LayerUnscaled(self, x):
    x = x + _attend(self, self.norm1(x), scale=None)
    return x + self.mlp(self.norm2(x))


@layer
def LayerScaledByWidth(self, x):
    x = x + _attend(self, self.norm1(x), scale="width")
    return x + self.mlp(self.norm2(x))


@layer
def LayerSoftmaxOverQueries(self, x):
    x = x + _attend(self, self.norm1(x), dim=-2)
    return x + self.mlp(self.norm2(x))


@layer
def LayerOneHead(self, x):
    x = x + _attend(self, self.norm1(x), heads=1)
    return x + self.mlp(self.norm2(x))


@layer
def LayerNorm1Twice(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm1(x))


@layer
def LayerParallel(self, x):
    return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))


@layer
def LayerNormalisedResidual(self, x):
    x = self.norm1(x)
    x = x + self.attn(x)
    x = self.norm2(x)
    return x + self.mlp(x)


@layer
def LayerMLPFirst(self, x):
    x = x + self.mlp(self.norm1(x))
    return x + self.attn(self.norm2(x))


LAYER_WRONG = [
    ("post-norm", LayerPostNorm, ["post-norm"]),
    ("no norm1", LayerNoNorm1, ["self.norm1`, which", "forgot the LayerNorms"]),
    ("no norm2", LayerNoNorm2, ["never calls `self.norm2`"]),
    ("no residual around attention", LayerNoAttentionResidual, ["residual around attention", "forgot the residual"]),
    ("no residual around the MLP", LayerNoMLPResidual, ["residual around the MLP", "forgot the residual"]),
    ("GELU in the MLP", LayerGELU, ["apply GELU"]),
    ("ReLU in the MLP", LayerReLU, ["apply ReLU"]),
    ("no activation in the MLP", LayerNoMLPActivation, ["never calls `self.mlp.act`"]),
    ("attention without the scale", LayerUnscaled, ["without the 1/√e scale"]),
    ("attention scaled by the width", LayerScaledByWidth, ["(the width d"]),
    ("softmax over the queries", LayerSoftmaxOverQueries, ["over the queries"]),
    ("one head", LayerOneHead, ["1 head(s)"]),
    ("norm1 twice", LayerNorm1Twice, ["self.norm1 twice"]),
    ("attention and MLP in parallel", LayerParallel, ["one after the other"]),
    ("the residual carries the normalised x", LayerNormalisedResidual, ["un-normalised"]),
    ("MLP before attention", LayerMLPFirst, ["attention comes first"]),
]


@layer
def LayerByHand(self, x):
    x = torch.add(x, _attend(self, self.norm1(x)))
    h = F.silu(self.mlp.fc1(self.norm2(x)))
    return x + self.mlp.fc2(h)


@layer
def LayerFunctionalNorm(self, x):
    h = F.layer_norm(x, x.shape[-1:], self.norm1.weight, self.norm1.bias, self.norm1.eps)
    x = x + self.attn(h)
    y = x + self.mlp(self.norm2(x))
    return y


@layer
def LayerLoop(self, x):
    for norm, sub in ((self.norm1, self.attn), (self.norm2, self.mlp)):
        x = x + sub(norm(x))
    return x


LAYER_RIGHT = [("attention and MLP by hand", LayerByHand), ("F.layer_norm with norm1's parameters", LayerFunctionalNorm),
               ("a loop over (norm, sub-layer)", LayerLoop)]


# ============================================================================ chapter 5: the MobileViT block
def block(forward):
    return type(forward.__name__, (me.MobileViTBlock,), {"forward": forward})


def _global(self, y, layout="(b ph pw) (nh nw) d", final_norm=True, norm_first=False, resize="bilinear", layers=None):
    """A student's global representation with switches for the mistakes; y (B, d, H, W)."""
    B, d, H, W = y.shape
    ph, pw = self.patch_size
    Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
    if (Hp, Wp) != (H, W):
        if resize == "pad":
            y = F.pad(y, (0, Wp - W, 0, Hp - H))
        elif resize == "nearest":
            y = F.interpolate(y, size=(Hp, Wp), mode="nearest")
        else:
            y = F.interpolate(y, size=(Hp, Wp), mode="bilinear", align_corners=resize == "corners")
    tokens = rearrange(y, f"b d (nh ph) (nw pw) -> {layout}", ph=ph, pw=pw)
    if norm_first:
        tokens = self.norm(tokens)
    for layer in (self.transformer if layers is None else self.transformer[:layers]):
        tokens = layer(tokens)
    if final_norm and not norm_first:
        tokens = self.norm(tokens)
    y = rearrange(tokens, f"{layout} -> b d (nh ph) (nw pw)", b=B, ph=ph, pw=pw, nh=Hp // ph)
    if (Hp, Wp) != (H, W):
        if resize == "pad":
            y = y[:, :, :H, :W]
        elif resize == "nearest":
            y = F.interpolate(y, size=(H, W), mode="nearest")
        else:
            y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=resize == "corners")
    return y


def _fuse(self, x, y):
    return self.fusion(torch.cat([x, y], dim=1))


@block
def BlockAddNoFusion(self, x):
    y = self.conv_proj(_global(self, self.local_rep(x)))
    return x + y


@block
def BlockAddThenFusionConv(self, x):
    y = self.conv_proj(_global(self, self.local_rep(x)))
    return self.fusion(x + y)


@block
def BlockConcatOrder(self, x):
    y = self.conv_proj(_global(self, self.local_rep(x)))
    return self.fusion(torch.cat([y, x], dim=1))


@block
def BlockNoFinalNorm(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), final_norm=False)))


@block
def BlockNormFirst(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), norm_first=True)))


@block
def BlockPad(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), resize="pad")))


@block
def BlockNearest(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), resize="nearest")))


@block
def BlockAcrossPixels(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), layout="(b nh nw) (ph pw) d")))


@block
def BlockNoConvProj(self, x):
    return _fuse(self, x, _global(self, self.local_rep(x)))


@block
def BlockResidual(self, x):
    return x + _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x))))


@block
def BlockReLUFusion(self, x):
    y = self.conv_proj(_global(self, self.local_rep(x)))
    return F.relu(self.fusion.norm(self.fusion.conv(torch.cat([x, y], 1))))


@block
def BlockNoKxK(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep.conv_1x1(x))))


@block
def BlockNoConvProjNorm(self, x):
    y = _global(self, self.local_rep(x))
    return _fuse(self, x, F.silu(self.conv_proj.conv(y)))


@block
def BlockOneLayer(self, x):
    return _fuse(self, x, self.conv_proj(_global(self, self.local_rep(x), layers=1)))


@block
def BlockConcatLocal(self, x):
    h = self.local_rep.conv_kxk(x)
    y = self.conv_proj(_global(self, self.local_rep.conv_1x1(h)))
    return self.fusion(torch.cat([h, y], dim=1))


BLOCK_WRONG = [
    ("x + y, no fusion", BlockAddNoFusion, ["never calls `self.fusion"]),
    ("x + y into the fusion", BlockAddThenFusionConv, ["did you add x + y"]),
    ("concatenation [y, x]", BlockConcatOrder, ["you concatenate [y, x]"]),
    ("no final LayerNorm", BlockNoFinalNorm, ["LayerNorm after the transformer"]),
    ("LayerNorm before the transformer", BlockNormFirst, ["*after* the transformer"]),
    ("zero padding", BlockPad, ["pad the map with zeros"]),
    ("nearest resize", BlockNearest, ["not 'nearest'"]),
    ("attention across the pixels of a patch", BlockAcrossPixels, ["across the P pixels"]),
    ("no conv_proj", BlockNoConvProj, ["skip self.conv_proj"]),
    ("a residual at the end", BlockResidual, ["no residual add"]),
    ("ReLU in the fusion", BlockReLUFusion, ["apply ReLU"]),
    ("no local 3x3 conv", BlockNoKxK, ["skipped the local representation's 3x3"]),
    ("no BatchNorm in conv_proj", BlockNoConvProjNorm, ["never calls `self.conv_proj.norm`"]),
    ("only the first transformer layer", BlockOneLayer, ["never calls `self.transformer.1`"]),
    ("concatenates the local conv's output", BlockConcatLocal, ["the block's *input* x"]),
]


@block
def BlockByHand(self, x):
    y = self.local_rep.conv_1x1(F.silu(self.local_rep.conv_kxk.norm(self.local_rep.conv_kxk.conv(x))))
    return self.fusion(torch.cat((x, self.conv_proj(_global(self, y))), 1))


@block
def BlockViaPackagePatches(self, x):
    B, C, H, W = x.shape
    y = self.local_rep(x)
    Hp, Wp = [math.ceil(s / p) * p for s, p in zip((H, W), self.patch_size)]
    z = F.interpolate(y, size=(Hp, Wp), mode="bilinear", align_corners=False)
    patches = me.unfold_patches(z, self.patch_size)
    P = patches.shape[1]
    tokens = self.norm(self.transformer(patches.flatten(0, 1)))
    z = me.fold_patches(tokens.unflatten(0, (B, P)), (Hp, Wp), self.patch_size)
    z = F.interpolate(z, size=(H, W), mode="bilinear", align_corners=False)  # a no-op when the size is right
    return self.fusion(torch.cat([x, self.conv_proj(z)], dim=1))


BLOCK_RIGHT = [("local conv by hand, cat of a tuple", BlockByHand),
               ("always resizing, flatten/unflatten", BlockViaPackagePatches)]

# ------------------------------------------------------------------------- a second batch, written later
@mv2
def Hardswish(self, x):
    h = _cna(self.expand, x, F.hardswish)
    h = _cna(self.depthwise, h, F.hardswish)
    return _finish(self, x, self.project(h))
@mv2
def ResBeforeProject(self, x):
    h = self.depthwise(self.expand(x))
    if self.use_residual:
        h = h + x
    return self.project(h)
@mv2
def DoubleBN(self, x):
    y = self.project(self.depthwise(self.expand(x)))
    y = self.project.norm(y)
    return x + y if self.use_residual else y
@mv2
def Sigmoid(self, x):
    h = self.expand(x)
    h = _cna(self.depthwise, h, torch.sigmoid)
    return _finish(self, x, self.project(h))
@layer
def NoSoftmax(self, x):
    q, k, v = rearrange(self.attn.qkv(self.norm1(x)), "b n (three h e) -> three b h n e", three=3, h=self.attn.num_heads)
    a = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v
    x = x + self.attn.proj(rearrange(a, "b h n e -> b n (h e)"))
    return x + self.mlp(self.norm2(x))
@layer
def HalfResidual(self, x):
    x = x + 0.5 * self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))
@layer
def GeluTanh(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x)), approximate="tanh"))
@layer
def HeadsSplitWrong(self, x):
    q, k, v = rearrange(self.attn.qkv(self.norm1(x)), "b n (three e h) -> three b h n e", three=3, h=self.attn.num_heads)
    a = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ v
    x = x + self.attn.proj(rearrange(a, "b h n e -> b n (h e)"))
    return x + self.mlp(self.norm2(x))
@block
def BlockPNSwapped(self, x):
    B, C, H, W = x.shape
    y = self.local_rep(x)
    ph, pw = self.patch_size
    Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
    z = F.interpolate(y, size=(Hp, Wp), mode="bilinear", align_corners=False)
    t = rearrange(z, "b d (nh ph) (nw pw) -> (b nh nw) (ph pw) d", ph=ph, pw=pw)
    t = self.norm(self.transformer(t))
    z = rearrange(t, "(b nh nw) (ph pw) d -> b d (nh ph) (nw pw)", b=B, nh=Hp // ph, ph=ph)
    z = F.interpolate(z, size=(H, W), mode="bilinear", align_corners=False)
    return self.fusion(torch.cat([x, self.conv_proj(z)], 1))
@block
def BlockGELUproj(self, x):
    y = _global(self, self.local_rep(x))
    return self.fusion(torch.cat([x, F.gelu(self.conv_proj.norm(self.conv_proj.conv(y)))], 1))
@block
def BlockNoLocal1x1(self, x):
    y = self.local_rep.conv_kxk(x)
    return self.fusion(torch.cat([x, self.conv_proj(_global(self, y))], 1))

MV2_WRONG += [
    ("Hardswish instead of SiLU", Hardswish, ["apply Hardswish"]),
    ("x added before the projection", ResBeforeProject, ["adds x before it runs self.project"]),
    ("the projection's BatchNorm twice", DoubleBN, ["`self.project.norm` 2 times"]),
    ("sigmoid instead of SiLU", Sigmoid, ["apply sigmoid"]),
]
LAYER_WRONG += [
    ("inline attention without softmax", NoSoftmax, ["without the softmax"]),
    ("attention's residual halved", HalfResidual, ["0.5"]),
    ("GELU (tanh) in the MLP", GeluTanh, ["apply GELU"]),
    ("heads from interleaved channels", HeadsSplitWrong, ["(three e h)"]),
]
BLOCK_WRONG += [
    ("patches and pixels swapped, written out", BlockPNSwapped, ["across the P pixels"]),
    ("GELU in conv_proj", BlockGELUproj, ["apply GELU"]),
    ("no local 1x1 conv", BlockNoLocal1x1, ["never runs self.local_rep.conv_1x1"]),
]


SETS["check_transformer_layer"] = (check_transformer_layer, LAYER_WRONG, LAYER_RIGHT)
SETS["check_mobilevit_block"] = (check_mobilevit_block, BLOCK_WRONG, BLOCK_RIGHT)
