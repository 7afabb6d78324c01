"""Omnichannel brand simulator: realistic tables with known ground truth (see ``simulate``).

``simulate`` returns the data-contract tables plus ``truth`` (latent parameters per true person) and
``truth_keys`` (customer_key → true_person); ``write_dataset`` writes them; ``oracle`` turns the latent state
into the true purchase probability and expected spend over a horizon.
"""

from .config import CATEGORIES, CHANNELS, EVENT_TYPES, GROUPS, STATUSES, SimConfig
from .core import simulate
from .festivals import calendar
from .oracle import oracle
from .writer import write_dataset

__all__ = [
    "simulate",
    "write_dataset",
    "oracle",
    "calendar",
    "SimConfig",
    "CHANNELS",
    "EVENT_TYPES",
    "STATUSES",
    "GROUPS",
    "CATEGORIES",
]
