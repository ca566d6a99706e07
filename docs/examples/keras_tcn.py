"""keras-tcn's TCN (philipperemy/keras-tcn, ``tcn/tcn.py``) rebuilt in Keras 3, for
``rfmap model`` (keras-tcn itself imports TensorFlow):

    rfmap model docs/examples/keras_tcn.py:build --input-size 3,200

Residual blocks of two causal dilated ``Conv1D`` (kernel 3, dilations 1, 2, 4, 8), a 1x1
``matching_conv1D`` when the channels change, skip connections summed, the last step.
"""

import keras
from keras import layers


class ResidualBlock(layers.Layer):
    def __init__(self, dilation_rate, nb_filters, kernel_size, **kwargs):
        super().__init__(**kwargs)
        self.dilation_rate = dilation_rate
        self.nb_filters = nb_filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self.convs = [
            layers.Conv1D(
                self.nb_filters,
                self.kernel_size,
                dilation_rate=self.dilation_rate,
                padding="causal",
                name=f"conv1D_{k}",
            )
            for k in range(2)
        ]
        self.drops = [layers.SpatialDropout1D(0.05, name=f"SDropout_{k}") for k in range(2)]
        if self.nb_filters != input_shape[-1]:
            self.match = layers.Conv1D(self.nb_filters, 1, padding="same", name="matching_conv1D")
        else:
            self.match = layers.Identity(name="matching_identity")

    def call(self, inputs, training=None):
        x1 = inputs
        for conv, drop in zip(self.convs, self.drops, strict=True):
            x1 = drop(keras.ops.relu(conv(x1)), training=training)
        return keras.ops.relu(self.match(inputs) + x1), x1


class TCN(layers.Layer):
    def __init__(self, nb_filters=64, kernel_size=3, dilations=(1, 2, 4, 8), **kwargs):
        super().__init__(**kwargs)
        self.blocks = [
            ResidualBlock(d, nb_filters, kernel_size, name=f"residual_block_{i}")
            for i, d in enumerate(dilations)
        ]

    def call(self, x, training=None):
        skips = []
        for block in self.blocks:
            x, skip = block(x, training=training)
            skips.append(skip)
        return layers.add(skips, name="Add_Skip_Connections")[:, -1, :]


def build():
    inputs = keras.Input((None, 3))
    outputs = layers.Dense(10, name="head")(TCN(name="tcn")(inputs))
    return keras.Model(inputs, outputs)
