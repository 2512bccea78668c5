
from personsearch.memory.dual_memory import DualMemory, momentum_update_rows_  # noqa: E402,F401  (SSL)
from personsearch.memory.instance_memory import InstanceMemory  # noqa: E402,F401  (CGPS)
