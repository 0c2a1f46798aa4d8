"""Experiments: the rows of an adaptation benchmark and the runner that trains, predicts and evaluates them.

Modules, one job each:

* :mod:`.rows`            the benchmark table as data (row key, label, trainer, stage, dataset it trains on)
* :mod:`.commands`        external commands: :class:`~.commands.Command`, the runner, nnU-Net program lookup
* :mod:`.datasets`        the adaptation and upper-bound datasets, their target test set and plans
* :mod:`.settings`        one benchmark's settings and folder layout (seeds, results roots, row folders)
* :mod:`.upper_bound`     giving the upper-bound dataset the adaptation plans and preprocessing it
* :mod:`.runner`          train -> predict -> evaluate of one row and seed, resumable
* :mod:`.medians`         median summary over seeds
* :mod:`.provenance`      machine, project commit, file hashes
* :mod:`.benchmark_report` benchmark.json content and benchmark.md
* :mod:`.benchmark`       :func:`~.benchmark.run_benchmark` and the ``glua_benchmark`` command

``glua_demo`` (:mod:`nnunet_glua.demo`) prepares its data and then runs its rows through the same code.
:mod:`nnunet_glua.evaluation` keeps the metrics, reports and figures that this package uses.
"""
