"""placeholder"""
from typing import Protocol
class Backend(Protocol):
    pass
