# The plan of the scale, the tables and the figures: quick jobs that read JSON files only.


wildcard_constraints:
    table="|".join(TABLES),
    figure="|".join(FIGURE_NAMES),


rule plan:
    """The scale's plan (model ids, configs, result files of each target), read by tables and figures."""
    input:
        code=PLAN_CODE,
    output:
        f"{RESULTS}/plan.json",
    params:
        inputs=json.dumps(PLAN_INPUTS, sort_keys=True),
    log:
        f"{LOGS}/plan.log",
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv plan --inputs {params.inputs:q} --out {output} > {log} 2>&1"


rule table:
    """One table as csv, md and tex: ours, the paper's value and the difference for every cell."""
    input:
        plan=f"{RESULTS}/plan.json",
        results=lambda wildcards: target_results(wildcards.table)(wildcards),
        code=TABLE_CODE,
    output:
        csv=report(
            f"{RESULTS}/tables/{{table}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "csv"},
        ),
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    params:
        title=lambda wildcards: PLAN["targets"][wildcards.table]["title"],
        results=lambda wildcards, input: os.path.dirname(input.plan),
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
    log:
        f"{LOGS}/tables/{{table}}.log",
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv table {wildcards.table} --plan {input.plan} --results {params.results}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule figure:
    """One figure as png and pdf, drawn from the JSON results only."""
    input:
        plan=f"{RESULTS}/plan.json",
        results=lambda wildcards: target_results(wildcards.figure)(wildcards),
        code=FIGURE_CODE,
    output:
        png=report(
            f"{FIGURES}/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=f"{FIGURES}/{{figure}}.pdf",
    params:
        title=lambda wildcards: PLAN["targets"][wildcards.figure]["title"],
        results=lambda wildcards, input: os.path.dirname(input.plan),
    log:
        f"{LOGS}/figures/{{figure}}.log",
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv figure {wildcards.figure} --plan {input.plan} --results {params.results}"
        " --out {output.png} > {log} 2>&1"


rule claims:
    """The paper's claims C1-C6 checked on this scale's Table 1 and Figure 3 results (PASS / FAIL)."""
    input:
        plan=f"{RESULTS}/plan.json",
        results=claims_results,
        code=CLAIMS_CODE,
    output:
        text=f"{RESULTS}/claims.txt",
        json=f"{RESULTS}/claims.json",
    params:
        scale=SCALE,
    log:
        f"{LOGS}/claims.log",
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv claims --results results --scale {params.scale} --out {output.text} --json {output.json} > {log} 2>&1"
