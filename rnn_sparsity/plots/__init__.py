"""Figures drawn from what is on disk: `run` for one run directory, `sweep` for comparisons across runs.

The Agg backend is selected here, before any pyplot import, so plotting never needs a display.
"""

import matplotlib

matplotlib.use("Agg")
