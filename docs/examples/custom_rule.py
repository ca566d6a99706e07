"""Teach rfmap the geometry of your own operations (run: python docs/examples/custom_rule.py).

rfmap derives every ATen operation it has a rule for; a custom operator or a module whose
forward rfmap should not look into gets a rule of its own.
"""

import torch
from torch import nn

from rfmap.trace import model_rf, register_module_rule, register_rule


# 1. A custom operator (torch.library), e.g. a fused blur written in C++ or Triton.
@torch.library.custom_op("mylib::blur5", mutates_args=())
def blur5(x: torch.Tensor) -> torch.Tensor:
    """A 5-tap box blur along the last dim (same length)."""
    return nn.functional.avg_pool1d(x, 5, 1, 2)


@blur5.register_fake
def _(x):
    return torch.empty_like(x)


blur5.register_autograd(  # for the gradient check (rfmap model --measure)
    lambda ctx, grad: nn.functional.avg_pool1d(grad, 5, 1, 2),
    setup_context=lambda ctx, inputs, output: None,
)


@register_rule(torch.ops.mylib.blur5.default)
def blur5_rule(ctx):
    # the op reads a 5-wide window around each position, like a convolution
    return ctx.conv(ctx.need("x"), kernel_size=5, padding=2)


# 2. A module class: its forward is not run, the rule gives its output.
class FourierMixer(nn.Module):
    """Mixes every position of the sequence (an FFT along the time axis)."""

    def forward(self, x):
        return torch.fft.irfft(torch.fft.rfft(x, dim=-1), n=x.shape[-1], dim=-1)


@register_module_rule(FourierMixer)
def fourier_rule(ctx, module, x):
    return ctx.whole(x, dims=[-1])  # every output position reads the whole axis


class Net(nn.Module):
    def __init__(self, mix: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.mix = FourierMixer() if mix else nn.Identity()

    def forward(self, x):
        return self.mix(blur5(self.conv(x)))


if __name__ == "__main__":
    r = model_rf(Net(), (1, 64))
    print(r.receptive_field, r.padding, r.method)  # (7,) (3,) analytic
    r = model_rf(Net(mix=True), (1, 64))
    print(r.receptive_field, r.is_global, r.method)  # (64,) True analytic
