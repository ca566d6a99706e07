"""A small ResNet in Flax (linen), for ``rfmap model``:

rfmap model docs/examples/flax_resnet.py:ResNet --input-size 3,64,64
"""

import flax.linen as nn


class Residual(nn.Module):
    """conv-BN-ReLU-conv plus a shortcut (a strided 1x1 projection when the shape changes)."""

    channels: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.channels, (3, 3), strides=self.stride, name="conv1")(x)
        y = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(y))
        y = nn.Conv(self.channels, (3, 3), name="conv2")(y)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1), strides=self.stride, name="proj")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (7, 7), strides=2, padding=3, name="stem")(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = Residual(16, name="block1")(x)
        x = Residual(32, stride=2, name="block2")(x)
        return Residual(64, stride=2, name="block3")(x)
