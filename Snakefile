# Reproduction workflow of "Adversarial Training for Free!" (Shafahi et al., NeurIPS 2019).
#
#   snakemake all --profile profiles/default                      # every table and figure, paper scale
#   snakemake table1 --profile profiles/default --config scale=mini
#   snakemake all --cores 2 --config scale=smoke                  # synthetic data, minutes
#   snakemake --report report.html --config scale=smoke           # tables and figures in one page
#
# Targets: table1 table2 table3 table4 table5 yopo trials fast figure1 figure2 figure3 figure4, and
# all (those whose datasets the scale provides). Scales live in config/config.yaml; the paper's
# experiments in freeadv/experiments/. Outputs: results/<scale>/, figures/<scale>/, logs/<scale>/
# (freeadv/experiments/layout.py). Parsing this file imports no torch.

import os

from snakemake.utils import min_version

min_version("8.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/targets.smk"


rule all:
    """Every table and figure whose datasets this scale provides."""
    default_target: True
    input:
        all_outputs,
