"""Entry point of evaluation: ``python -m cbp.evaluate RUN_DIR [--ckpt PATH] [--out FILE] [...]``.

The code is :mod:`cbp.engine.evaluate`; this module only starts it. ``python -m cbp.evaluate --help``
lists the options.
"""

from cbp.engine.evaluate import cli

if __name__ == "__main__":
    cli()
