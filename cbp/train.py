"""Entry point of the training engine: ``python -m cbp.train`` and ``torchrun -m cbp.train``.

The engine itself is :mod:`cbp.engine.train`; this module only starts it, so that the documented
command stays short. ``python -m cbp.train --help`` lists the options.
"""

from cbp.engine.train import cli

if __name__ == "__main__":
    cli()
