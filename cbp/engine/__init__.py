"""The training engine: what ``python -m cbp.train`` / ``torchrun -m cbp.train`` and ``python -m cbp.evaluate`` run.

* :mod:`cbp.engine.config`: the config tree (dataclasses), presets, ``--section.key=value`` overrides;
* :mod:`cbp.engine.build`: data, model, OCCL and optimiser from a config;
* :mod:`cbp.engine.process`: device, process group (torchrun) and seeds;
* :mod:`cbp.engine.train`: the training loop (Eq. 7), resume, checkpoints, logs;
* :mod:`cbp.engine.evaluate`: whole-image and sliding-window evaluation;
* :mod:`cbp.engine.run_files`: the files of a run folder, and whether a folder is a run;
* :mod:`cbp.engine.checkpoint`, :mod:`cbp.engine.optim`, :mod:`cbp.engine.sampler`.

The engine imports the method (:mod:`cbp`), :mod:`cbp.models` and :mod:`cbp.data`, never the book
or the study.
"""
