"""Event contracts: the only data services exchange.

Subjects are `trial.v1.<service>.<fact>`. A field is added, never renamed; a breaking
change is a new `v2` subject. One module per producer; everything is re-exported here.
No event carries the arm; the cluster, MPI-D answers and contact details travel only sealed
to their one consumer (`services/core/sealing.py`; who gets which REDCap fields:
`form_fields.py`), so a reader of the bus or an outbox cannot join them with the module.
"""

from .allocation import *  # noqa: F403
from .base import ContractViolation, Envelope, Event, utcnow  # noqa: F401
from .gateway import *  # noqa: F403
from .notifications import *  # noqa: F403
from .randomization import *  # noqa: F403
from .safety import *  # noqa: F403
