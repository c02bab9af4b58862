"""Why does the Free step on CUDA differ from CPU fp32 in the first conv's weights? TF32 on vs off."""
import sys, torch
sys.path.insert(0, "tests")
import test_gpu as t
dev = torch.device("cuda")
config = t.tiny_config(device="cuda")
ref = t.free_steps(config, t.CPU, channels_last=False, replays=2)
for tf32 in (True, False):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    for cl in (True, False):
        got = t.free_steps(config, dev, channels_last=cl, replays=2)
        worst = max(((k, float((got["weights"][k] - ref["weights"][k]).abs().max())) for k in ref["weights"]
                     if ref["weights"][k].is_floating_point()), key=lambda kv: kv[1])
        print(f"tf32={tf32} channels_last={cl}: worst weight diff {worst}, delta agreement "
              f"{t.agreement(got['delta'], ref['delta']):.4f}, losses {got['losses']} vs {ref['losses']}")
