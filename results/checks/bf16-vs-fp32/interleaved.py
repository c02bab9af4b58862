"""fp32 and bf16-autocast training steps of one architecture timed round-robin in one process
(freeadv.bench.time_interleaved), so that this VM's drift cannot decide the speed-up.
Usage: python interleaved.py ARCH WIDTH|none REPS OUT.json"""
import json
import sys
from contextlib import nullcontext
from functools import partial

import torch

from freeadv import config as cfg
from freeadv.bench import time_interleaved
from freeadv.methods import build_method
from freeadv.provenance import stamp
from freeadv.training import make_optimizer, model_for, place_batch, place_model, setup_runtime

arch, width, reps, out = sys.argv[1], None if sys.argv[2] == "none" else int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = {}
g = torch.Generator().manual_seed(0)
x, y = torch.rand(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
for method in ("natural", "free"):
    for amp in ("off", "bf16"):
        config = cfg.resolve({"dataset": "cifar10", "arch": arch, "width": width, "batch_size": 128, "iterations": 1,
                              "device": "cpu", "method": method, "amp": amp})
        dev, autocast, channels_last = setup_runtime(config)
        torch.manual_seed(0)
        model = place_model(model_for(config), dev, channels_last).train()
        steps[f"{method} {amp}"] = partial(build_method(config, autocast=autocast).step, model,
                                           make_optimizer(model, config), place_batch(x, channels_last), y, None)
timings = time_interleaved(steps, torch.device("cpu"), warmup=2, reps=reps)
result = {"arch": arch, "width": width, "batch": 128, "reps": reps, "timings": timings,
          "bf16_speedup": {m: timings[f"{m} off"]["median_s"] / timings[f"{m} bf16"]["median_s"] for m in ("natural", "free")},
          "free_over_natural": {a: timings[f"free {a}"]["median_s"] / timings[f"natural {a}"]["median_s"] for a in ("off", "bf16")},
          **stamp(torch.device("cpu"))}
json.dump(result, open(out, "w"), indent=1)
print(arch, json.dumps({k: result[k] for k in ("bf16_speedup", "free_over_natural")}))
