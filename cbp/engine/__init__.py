"""The training engine: what ``python -m cbp.train`` / ``torchrun -m cbp.train`` and ``python -m cbp.evaluate`` run.

* :mod:`cbp.engine.config`: the config tree (dataclasses), presets, ``--section.key=value`` overrides;
* :mod:`cbp.engine.build`: data, model, OCCL and optimiser from a config;
* :mod:`cbp.engine.process`: device, process group (torchrun), seeds, determinism, signals;
* :mod:`cbp.engine.command`: the command line of ``python -m cbp.train``;
* :mod:`cbp.engine.state`: what the loop reads and changes, set up fresh or resumed from a checkpoint;
* :mod:`cbp.engine.train`: the training loop, checkpoints, logs;
* :mod:`cbp.engine.loss`: the total loss (Eq. 7);
* :mod:`cbp.engine.evaluate`: whole-image and sliding-window evaluation;
* :mod:`cbp.engine.run_dir`: the run folder: its files, its lock, which config changes a resume accepts;
* :mod:`cbp.engine.checkpoint`, :mod:`cbp.engine.optim`, :mod:`cbp.engine.sampler`.

The engine imports the method (:mod:`cbp`), :mod:`cbp.models` and :mod:`cbp.data`, never the book
or the study.
"""
