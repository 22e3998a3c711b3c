"""``python -m ppl_lvm.cli``: the ``ppl-lvm`` command."""

import sys

from . import main

sys.exit(main())
