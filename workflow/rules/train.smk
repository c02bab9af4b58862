# Training: one job per model of the plan, i.e. per distinct training config.


rule train:
    """Train one model with `freeadv train` (under torchrun, one process per GPU, when the job has
    more than one `gpu`); re-running a killed job resumes from its checkpoint. The workflow owns its
    run folders: a run of another config there is replaced (--supersede). A retry (attempt > 1) may
    restore the outputs of a run that finished before its job was killed (--restore-finished: only
    for the same config, training code and weights); a first attempt, which Snakemake starts when
    the code or the config changed or when forced, always trains."""
    input:
        code=TRAIN_CODE,
        data=training_data,
    output:
        model=result(layout.model_path("{model}")),
        summary=result(layout.train_path("{model}")),
    params:
        gpu_slot=gpu_slot("train"),
        launcher=train_launcher,
        settings=train_overrides,
        run_dir=lambda wildcards, output: os.path.dirname(output.summary),
    log:
        LAYOUT.log("train", "{model}.log"),
    benchmark:
        job_benchmark("train", "{model}")
    threads: job_threads("train")
    resources:
        gpu=job_resource("train", "gpu"),
        mem_mb=job_resource("train", "mem_mb"),
        runtime=job_runtime("train"),
        attempt=lambda wildcards, attempt: attempt,   # the shell line's --restore-finished on a retry
    conda:
        "../envs/freeadv.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}{params.launcher} train {params.settings} --out-dir {params.run_dir:q} --no-progress"
        " --supersede $(test {resources.attempt} -gt 1 && echo --restore-finished) > {log:q} 2>&1"


rule cost_bench:
    """Table 1's training steps (natural, Free at each m, 7-PGD) timed round-robin in one process
    on Table 1's architecture and precision (`freeadv bench`): claim C3's evidence, which the
    drift between two training jobs' wall times cannot decide."""
    input:
        code=BENCH_CODE,
    output:
        result(layout.cost_bench_path()),
    params:
        args=lambda wildcards: " ".join(shlex.quote(a) for a in PLAN.cost_bench.args),
        gpu_slot=gpu_slot("train", model=lambda: PLAN.cost_bench.model),
    log:
        LAYOUT.log("cost_bench.log"),
    threads: lambda wildcards: _job_settings("train", PLAN.cost_bench.model)["threads"]
    resources:
        gpu=lambda wildcards: _job_settings("train", PLAN.cost_bench.model)["gpu"],
        mem_mb=lambda wildcards: _job_settings("train", PLAN.cost_bench.model)["mem_mb"],
        runtime=60,
    conda:
        "../envs/freeadv.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}freeadv bench {params.args} --out {output:q} > {log:q} 2>&1"
