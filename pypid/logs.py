"""
The name operators already use: C{twistd --logger pypid.logs.json_observer}.
The logging code lives in L{pypid.ops.logs}.
"""

from pypid.ops.logs import json_observer

__all__ = ["json_observer"]
