# One named rule per table and figure of the paper (snakemake table1, snakemake figure3, ...).
# A target whose datasets the scale does not provide fails with a message saying so.

for _target in PLAN.targets:

    rule:
        name:
            _target
        input:
            target_outputs(_target),
        localrule: True
