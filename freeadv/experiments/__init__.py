"""The paper's experiments and how one scale of the workflow realises them; torch-free.

Three layers, each a pure function of the one before, so the Snakefile can build the plan while
it parses (on every job of a cluster run) without importing torch:

1. :mod:`.design`: the paper's design. Every table and figure as rows of abstract cells
   (dataset, architecture, training method and its settings) and columns of metrics (an attack
   and the field of its result that gives the number), in the paper's names; the records are in
   :mod:`.records`, where a user's module registers targets of its own.
2. :mod:`.paper_values`: the paper's numbers, ``paper_values.csv``, transcribed once.
3. :mod:`.scales`: one scale (paper / mini / smoke) of the workflow config maps every paper
   dataset and architecture onto what is actually trained (e.g. CIFAR-10 WRN-32-10 -> CIFAR-10
   (JPEG) small_cnn at mini), caps attacks if asked, and so turns each cell into a concrete
   training config and a *model id* named after that config. Two cells that realise the same
   config share one model, trained once.

The plan (typed records in :mod:`.plan`, built by :func:`.scales.build_plan` and written as
``plan.json``) is what both the Snakefile (to build the
DAG) and ``freeadv table`` / ``freeadv figure`` (to find the result files) read, so the two can
never disagree. :mod:`.layout` says where every file of a scale lives; :mod:`.deps` which library
files each command depends on (the workflow's ``code`` inputs).
"""
