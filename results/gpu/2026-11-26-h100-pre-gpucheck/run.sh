#!/bin/bash
# One device call: environment, bench wrn32_10 + preact_resnet18 on cuda, a real-data Free run on cuda
# (train, kill-free resume, attack), and the test suite with CUDA visible.
export PYTHONUNBUFFERED=1 FREEADV_CACHE=/tmp/fcache PYTHONPATH=$PWD
python3 -m pip install -q --no-deps --no-build-isolation -e . > $OUT/pip.txt 2>&1 || echo "pip install -e failed"
L=$OUT/log.txt
{
date; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import sys,torch,torchvision,numpy;print(sys.version.split()[0],torch.__version__,torchvision.__version__,numpy.__version__,torch.cuda.get_device_name(),torch.backends.cudnn.version())"
python3 -c "import yaml,pandas,matplotlib,tqdm,PIL;print('deps ok')"
} 2>&1 | tee -a $L
echo "== bench wrn32_10" | tee -a $L
timeout 150 python3 -m freeadv bench --device cuda --arch wrn32_10 --reps 15 --warmup 5 --out $OUT/bench_wrn32_10.json 2>&1 | tee -a $L
echo "== bench preact_resnet18" | tee -a $L
timeout 70 python3 -m freeadv bench --device cuda --arch preact_resnet18 --reps 20 --warmup 5 --out $OUT/bench_preact_resnet18.json 2>&1 | tee -a $L
echo "== train free m=8 preact cifar10-jpeg cuda 300 it, then resume to 600" | tee -a $L
R=/tmp/run_free
timeout 120 python3 -m freeadv train --set dataset=cifar10-jpeg --set data_root=.gpu --set arch=preact_resnet18 --set method=free --set iterations=300 --set checkpoint_every=150 --set eval_n=500 --set log_every=50 --no-progress --out $R 2>&1 | tail -20 | tee -a $L
timeout 45 python3 -m freeadv train --set dataset=cifar10-jpeg --set data_root=.gpu --set arch=preact_resnet18 --set method=free --set iterations=300 --set checkpoint_every=150 --set eval_n=500 --set log_every=50 --no-progress --out $R 2>&1 | tail -5 | tee -a $L
cp $R/train.json $OUT/train_free.json 2>/dev/null; cp $R/log.jsonl $OUT/log_free.jsonl 2>/dev/null
timeout 45 python3 -m freeadv attack --run $R --attack pgd --steps 20 --n 1000 --device cuda --no-progress --out $OUT/eval_pgd20.json 2>&1 | tail -8 | tee -a $L
echo "== pytest with CUDA visible" | tee -a $L
timeout 110 python3 -m pytest -q -n 12 -p no:cacheprovider --timeout 100 --ignore tests/test_workflow.py -rfE tests 2>&1 | tail -40 | tee -a $L
date | tee -a $L
