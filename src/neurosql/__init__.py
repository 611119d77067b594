"""NeuroSQL: deep generative models trained by quantile assignment, with no
encoder and no discriminator (Generative Model via Quantile Assignment, 2026)."""

__version__ = "0.1.0"

from .errors import NeuroSQLError  # noqa: E402
from .methods.neurosql import NeuroSQL, NeuroSQLConfig  # noqa: E402

__all__ = ["NeuroSQL", "NeuroSQLConfig", "NeuroSQLError", "__version__"]
