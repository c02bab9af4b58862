# Evaluation of a trained model: one job per (model, attack), and the figure-data analyses.


wildcard_constraints:
    model="[^/]+",
    attack="[^/]+",


rule attack:
    """Clean and robust accuracy of one model under one attack (`freeadv attack`); attack_best runs the
    same on the model_best.pt of a run that keeps its best weights (keep_best)."""
    input:
        model=result(layout.model_path("{model}")),
        summary=result(layout.train_path("{model}")),
        code=ATTACK_CODE,
    output:
        result(layout.eval_path("{model}", "{attack}")),
    params:
        attack=attack_arguments,
        gpu_slot=gpu_slot("attack"),
        weights="final",
        batch_size=SETTINGS.get("attack_batch_size", "auto"),
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
    log:
        LAYOUT.log("attack", "{model}", "{attack}.log"),
    benchmark:
        job_benchmark("attack", "{model}", "{attack}")
    threads: job_threads("attack")
    resources:
        gpu=job_resource("attack", "gpu"),
        mem_mb=job_resource("attack", "mem_mb"),
        runtime=job_runtime("attack"),
    conda:
        "../envs/freeadv.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}freeadv attack --run {params.run_dir:q} {params.attack} --batch-size {params.batch_size:q}"
        " --weights {params.weights:q} --out {output:q} --no-progress > {log:q} 2>&1"


use rule attack as attack_best with:
    output:
        result(layout.eval_path("{model}", "{attack}", "best")),
    params:
        attack=attack_arguments,
        gpu_slot=gpu_slot("attack"),
        weights="best",
        batch_size=SETTINGS.get("attack_batch_size", "auto"),
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
    log:
        LAYOUT.log("attack", "{model}", "best", "{attack}.log"),
    benchmark:
        job_benchmark("attack", "{model}", "best", "{attack}")


rule analysis:
    """Figure data of one model: `freeadv adv-examples` (Figure 2) or `freeadv loss-surface` (Figure 3)."""
    input:
        model=result(layout.model_path("{model}")),
        summary=result(layout.train_path("{model}")),
        code=ANALYSIS_CODE,
    output:
        result(layout.analysis_path("{model}", "{analysis}")),
    params:
        command=analysis_arguments,
        gpu_slot=gpu_slot("analysis"),
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
    log:
        LAYOUT.log("analysis", "{model}", "{analysis}.log"),
    benchmark:
        job_benchmark("analysis", "{model}", "{analysis}")
    threads: job_threads("analysis")
    resources:
        gpu=job_resource("analysis", "gpu"),
        mem_mb=job_resource("analysis", "mem_mb"),
        runtime=job_runtime("analysis"),
    conda:
        "../envs/freeadv.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.gpu_slot}freeadv {params.command} --run {params.run_dir:q} --out {output:q} > {log:q} 2>&1"
