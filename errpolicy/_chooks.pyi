# The C module built from _chooks.c; errpolicy/_hooks.py documents it (PyHook is its twin).
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

class Hook:
    __wrapped__: Callable[..., Any]
    slow: Callable[..., Any] | None
    def __init__(
        self,
        original: Callable[..., Any],
        slow: Callable[..., Any] | None,
        active: ContextVar[Any],
        *,
        bind: bool = ...,
        direct: bool = ...,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

class GuardIsOpen:
    pattern: str
    def __init__(self, active: ContextVar[Any]) -> None: ...
    def match(self, text: str) -> bool: ...

def builtin(hook: Hook) -> Callable[..., Any]: ...
