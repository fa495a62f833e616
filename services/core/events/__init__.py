"""Event contracts: the only data services exchange.

Subjects are `trial.v1.<service>.<fact>`. A field is added, never renamed; a breaking
change is a new `v2` subject. One module per producer; everything is re-exported here.
Cluster and arm appear only in events that blinded components never read.
"""

from .allocation import *  # noqa: F403
from .base import ContractViolation, Envelope, Event, utcnow  # noqa: F401
from .gateway import *  # noqa: F403
from .notifications import *  # noqa: F403
from .randomization import *  # noqa: F403
from .safety import *  # noqa: F403
