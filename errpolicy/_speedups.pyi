# The C module built from _speedups.c; errpolicy/_core.py types and documents it.
from typing import Any

GuardCore: type[Any]
ReportCore: type[Any]

def setup(**hooks: Any) -> None: ...
def guard(name: str, *, policy: Any = ..., default: Any = ...) -> Any: ...
