#!/usr/bin/env bash
# One short GPU check of `rfmap erf` (under 4 minutes on one H100/H200):
#   1. --device auto picks CUDA; CUDA and CPU give the same map (resnet50 layer4, 1024 px);
#   2. images/s on CUDA: RepLKNet's per-image loop vs rfmap batched (full input, RF crop,
#      crop + channels_last), same model, same images, same run;
#   3. with two or more GPUs: torchrun (NCCL) with P=1 and P=2, same map, speed-up.
# Results go to $OUT (gpu_check.json, gpu_check.log, erf_cuda.png).
#
#   OUT=/tmp/out bash benchmarks/erf_gpu_check.sh          (from the repository root)
set -euo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

"$PY" - "$OUT" <<'PYTHON'
import json, sys, time
from pathlib import Path

import numpy as np
import torch
import torchvision

from rfmap.erf import erf, resolve_device
from rfmap.images import sample_images
from rfmap.plot import save_figure
from rfmap.plot.erf import plot_erf

out = Path(sys.argv[1])
report = {"torch": torch.__version__, "cuda": torch.version.cuda,
          "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
print(report)
assert torch.cuda.is_available(), "CUDA is not available"
# Exact float32 on both sides for the equality check (no TF32 shortcuts).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

size, layer = 1024, "layer4"
torch.manual_seed(0)
model = torchvision.models.resnet50(weights=None).eval()
images = sample_images((3, size, size), 16)
array = np.stack([images.load(i) for i in range(len(images))])
array = np.concatenate([array, array])  # 32 inputs
kwargs = dict(gradient="relu", output_relu=True)

# 1. auto device; CPU/CUDA equality.  float32 rounding of a random-weight ResNet-50 is
#    about 1e-2 of the map's maximum (float32 vs float64 on one device says as much), so
#    equality is checked in float64 (512 px) and float32 differences are reported.
report["auto_device"] = str(resolve_device("auto"))
assert report["auto_device"].startswith("cuda"), report["auto_device"]
double = torchvision.models.resnet50(weights=None).eval()
double.load_state_dict(model.state_dict())
double = double.double()
small = np.stack([sample_images((3, 512, 512), 2).load(i) for i in range(2)]).astype(np.float64)
cpu64 = erf(double, small, layer, device="cpu", **kwargs)
gpu64 = erf(double, small, layer, device="cuda", **kwargs)
gpu64_full = erf(double, small, layer, device="cuda", crop=False, **kwargs)
scale64 = float(np.abs(cpu64.map).max())
report["float64_cpu_vs_cuda_max_rel_diff"] = float(np.abs(cpu64.map - gpu64.map).max()) / scale64
report["float64_cuda_crop_vs_full_max_rel_diff"] = (
    float(np.abs(gpu64.map - gpu64_full.map).max()) / scale64
)
cpu = erf(model, array[:2], layer, device="cpu", **kwargs)
gpu = erf(model, array[:2], layer, device="auto", **kwargs)
gpu_full = erf(model, array[:2], layer, device="cuda", crop=False, **kwargs)
scale = float(np.abs(cpu.map).max())
report["cuda_device"] = gpu.device
report["float32_cpu_vs_cuda_max_rel_diff"] = float(np.abs(cpu.map - gpu.map).max()) / scale
report["float32_cuda_crop_vs_full_max_rel_diff"] = (
    float(np.abs(gpu.map - gpu_full.map).max()) / scale
)
report["crop"] = gpu.crop
for key, value in report.items():
    print(f"{key}: {value}")
assert report["float64_cpu_vs_cuda_max_rel_diff"] < 1e-9
assert report["float64_cuda_crop_vs_full_max_rel_diff"] < 1e-9
assert report["float32_cpu_vs_cuda_max_rel_diff"] < 5e-2
torch.backends.cudnn.benchmark = True

# 2. speed on CUDA, same images for everyone, warm-up first.
trunk = torch.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1,
                            model.layer2, model.layer3, model.layer4).cuda().eval()


def replknet_loop(images_np):
    meter = None
    for x in images_np:
        samples = torch.from_numpy(x[None]).cuda(non_blocking=True)
        samples.requires_grad = True
        outputs = trunk(samples)
        h, w = outputs.shape[2:]
        central = torch.relu(outputs[:, :, h // 2, w // 2]).sum()
        grad = torch.relu(torch.autograd.grad(central, samples)[0])
        grad_map = grad.sum((0, 1)).cpu().numpy()
        meter = grad_map if meter is None else meter + grad_map
    return meter / len(images_np)


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, value


model = model.cuda()
runs = {
    "replknet_loop": lambda: replknet_loop(array),
    "rfmap_full": lambda: erf(model, array, layer, crop=False, **kwargs).map,
    "rfmap_crop_nchw": lambda: erf(model, array, layer, channels_last=False, **kwargs).map,
    "rfmap_crop": lambda: erf(model, array, layer, **kwargs).map,  # default: channels-last
}
timings, maps = {}, {}
for name, fn in runs.items():
    fn()  # warm-up (cudnn autotuning)
    timings[name], maps[name] = timed(fn)
for name, seconds in timings.items():
    ratio = timings["replknet_loop"] / seconds
    print(f"{name:<28} {seconds:7.3f} s  {len(array) / seconds:8.2f} images/s  {ratio:5.2f}x loop")
    diff = float(np.abs(maps[name] - maps["replknet_loop"]).max()) / scale
    report[name] = {"seconds": seconds, "images_per_second": len(array) / seconds,
                    "vs_loop": ratio, "max_rel_diff_vs_loop": diff}
fig = plot_erf(erf(model, array, layer, **kwargs)).figure
save_figure(fig, out / "erf_cuda.png")
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
PYTHON

# 3. torchrun with NCCL when there are two GPUs or more.
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  cat > "$OUT/nccl_run.py" <<'PYTHON'
import json, sys, time
import numpy as np, torch, torchvision
import torch.distributed as dist
from rfmap.erf import erf, process_group
from rfmap.images import noise_images
torch.manual_seed(0)
model = torchvision.models.resnet50(weights=None).eval()
images = noise_images(32, (3, 1024, 1024), seed=0)
with process_group("auto") as (rank, world):
    erf(model, noise_images(2, (3, 1024, 1024)), "layer4", distributed=False)
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    result = erf(model, images, "layer4", batch_size=4)
    seconds = time.perf_counter() - start
    if rank == 0:
        np.save(f"{sys.argv[1]}/nccl_map_{world}.npy", result.map)
        print(json.dumps({"world": world, "seconds": seconds, "device": result.device}))
PYTHON
  for P in 1 2; do
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=$P "$OUT/nccl_run.py" "$OUT" \
      | grep '^{' | tee "$OUT/nccl_$P.json"
  done
  "$PY" -c "
import json, numpy as np
a, b = np.load('$OUT/nccl_map_1.npy'), np.load('$OUT/nccl_map_2.npy')
one, two = (json.load(open(f'$OUT/nccl_{p}.json')) for p in (1, 2))
print('NCCL P=2 vs P=1: speed-up %.2fx, max rel diff %.1e' % (
    one['seconds'] / two['seconds'], np.abs(a - b).max() / np.abs(a).max()))"
  rm -f "$OUT"/nccl_map_*.npy
else
  echo "one GPU: torchrun/NCCL with P=2 skipped"
fi
