"""The reproduction study: ``python -m cbp.experiments run ablations --jobs 2 [--profile quick|default|gpu]``.

The protocol (arms, seeds, metrics, decision rule) is ``experiments/protocol.md``, committed before
any result. This package turns it into runs (:mod:`cbp.experiments.study`), executes them in
parallel and resumably (:mod:`cbp.experiments.runner`), records each as
``results/<study>/<run>.json`` (:mod:`cbp.experiments.record`) and judges the paper's claims
(:mod:`cbp.experiments.verdicts`)::

    python -m cbp.experiments run ablations --jobs 2            # the default study (~2 h, 2 cores)
    python -m cbp.experiments run ablations --profile quick     # end-to-end check (~10 min)
    python -m cbp.experiments status ablations                  # done / running / pending
    python -m cbp.experiments table ablations                   # the verdict table
"""

from cbp.experiments.study import PROFILES, PROTOCOL_COMMIT, Run, plan
from cbp.experiments.verdicts import CLAIMS, compare, records

__all__ = ["CLAIMS", "PROFILES", "PROTOCOL_COMMIT", "Run", "compare", "plan", "records"]
