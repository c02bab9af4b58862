# The plan of the scale, the tables and the figures: quick jobs that read JSON files only.


wildcard_constraints:
    table="|".join(TABLE_NAMES),
    figure="|".join(FIGURE_NAMES),


rule plan:
    """The scale's plan (model ids, configs, result files of each target), read by tables and figures."""
    input:
        code=REPORT_CODE,
    output:
        LAYOUT.plan,
    params:
        inputs=json.dumps(PLAN_INPUTS, sort_keys=True),
    log:
        LAYOUT.log("plan.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv plan --inputs {params.inputs:q} --out {output:q} > {log:q} 2>&1"


rule table:
    """One table as csv, md and tex: ours, the paper's value and the difference for every cell."""
    input:
        plan=LAYOUT.plan,
        results=lambda wildcards: target_results(wildcards.table)(wildcards),
        code=REPORT_CODE,
    output:
        csv=report(
            LAYOUT.table("{table}", "csv"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "csv"},
        ),
        md=LAYOUT.table("{table}", "md"),
        tex=LAYOUT.table("{table}", "tex"),
    params:
        title=lambda wildcards: PLAN.targets[wildcards.table].title,
        results=lambda wildcards, input: layout.ScaleLayout.of_plan(input.plan).results,
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
    log:
        LAYOUT.log("tables", "{table}.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv table {wildcards.table:q} --plan {input.plan:q} --results {params.results:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule curves:
    """A table's training curves (clean and PGD accuracy at each check, one line per model, one row of
    panels per kind of check)."""
    input:
        plan=LAYOUT.plan,
        results=lambda wildcards: table_train_results(wildcards.table),
        code=REPORT_CODE,
    output:
        png=report(
            LAYOUT.figure(layout.curves_name("{table}"), "png"),
            caption="../report/curves.rst",
            category="Training curves",
            labels={"table": "{table}"},
        ),
        pdf=LAYOUT.figure(layout.curves_name("{table}"), "pdf"),
    params:
        results=lambda wildcards, input: layout.ScaleLayout.of_plan(input.plan).results,
    log:
        LAYOUT.log("figures", "curves_{table}.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv curves {wildcards.table:q} --plan {input.plan:q} --results {params.results:q}"
        " --out {output.png:q} > {log:q} 2>&1"


rule figure:
    """One figure as png and pdf, drawn from the JSON results only."""
    input:
        plan=LAYOUT.plan,
        results=lambda wildcards: target_results(wildcards.figure)(wildcards),
        code=REPORT_CODE,
    output:
        png=report(
            LAYOUT.figure("{figure}", "png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=LAYOUT.figure("{figure}", "pdf"),
    params:
        title=lambda wildcards: PLAN.targets[wildcards.figure].title,
        results=lambda wildcards, input: layout.ScaleLayout.of_plan(input.plan).results,
    log:
        LAYOUT.log("figures", "{figure}.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv figure {wildcards.figure:q} --plan {input.plan:q} --results {params.results:q}"
        " --out {output.png:q} > {log:q} 2>&1"


rule cost:
    """What each train, attack and analysis job of `all` cost (wall, CPU seconds, peak memory from
    their benchmark: files) beside the threads, GPUs, memory and runtime it asked for."""
    input:
        plan=LAYOUT.plan,
        benchmarks=cost_benchmarks,
        code=COST_CODE,
    output:
        csv=report(
            LAYOUT.cost_table("csv"),
            caption="../report/cost.rst",
            category="Cost",
            labels={"table": "cost per job", "format": "csv"},
        ),
        md=LAYOUT.cost_table("md"),
        record=result(layout.resources_path()),
    params:
        resources=cost_resources(),
        results=lambda wildcards, input: layout.ScaleLayout.of_plan(input.plan).results,
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
    log:
        LAYOUT.log("tables", "cost.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv cost-table --results {params.results:q} --resources {params.resources:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule claims:
    """The paper's claims C1-C6 checked on this scale's Table 1 and Figure 3 results (PASS / FAIL)."""
    input:
        plan=LAYOUT.plan,
        results=claims_results,
        code=REPORT_CODE,
    output:
        text=LAYOUT.claims_text,
        json=LAYOUT.claims_json,
    params:
        results_root=lambda wildcards, input: layout.ScaleLayout.of_plan(input.plan).results_root,
        scale=SCALE,
    log:
        LAYOUT.log("claims.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv claims --results {params.results_root:q} --scale {params.scale:q} --out {output.text:q}"
        " --json {output.json:q} > {log:q} 2>&1"
