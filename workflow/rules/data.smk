# Datasets: each one of the scale fetched or checked once, before any training job reads it.


wildcard_constraints:
    dataset="|".join(re.escape(name) for name in DATA_SOURCES) or "(?!)",


rule data:
    """Fetch or check one dataset of the scale (`freeadv fetch-data`: torchvision's download and md5
    check, an archive's digest and CRC, a folder's layout) on the machine that runs Snakemake, and
    write its stamp, which every training job on it waits for: no two jobs download into one folder
    and compute nodes need no internet. Missing and not downloadable, it fails once with one line
    naming the folder to fill (stderr is not redirected, so that line shows in Snakemake's output)."""
    output:
        result("data/{dataset}.txt"),
    params:
        args=data_arguments,
    log:
        LAYOUT.log("data", "{dataset}.log"),
    localrule: True
    conda:
        "../envs/freeadv.yaml"
    shell:
        "freeadv fetch-data {wildcards.dataset:q} {params.args} --stamp {output:q} > {log:q}"
