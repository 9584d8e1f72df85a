"""What a visitor sees of an error: `DemoError` as is, anything else as one sentence (the traceback goes to the log),
and never a server path (`hide_paths`)."""

from __future__ import annotations

import functools
import inspect
import logging
import re
from typing import Any, Callable

import gradio as gr

from .limits import DemoError

logger = logging.getLogger("videorefer.demo.handlers")
_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"`:,;()\[\]]+)+/([^\s/'\"`:,;()\[\]]+)")  # /a/b/name -> name


def hide_paths(message: str) -> str:
    """`message` with every absolute path (two or more parts) replaced by its last part."""
    return _PATH.sub(r"\1", message)


def user_errors(fn: Callable) -> Callable:
    """Show `DemoError` (and any unexpected error, briefly) as `gr.Error` without server paths; works for functions and
    generators."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, gr.Error):
            error.message = hide_paths(str(error.message))
            return error
        if isinstance(error, DemoError):
            return gr.Error(hide_paths(str(error)))
        if isinstance(error, RecursionError):
            return gr.Error("The request is nested too deeply; send flatter JSON.")
        logger.exception("unexpected error in %s", fn.__name__)  # the traceback goes to the server log
        return gr.Error(f"Something went wrong ({type(error).__name__}); the server log has the details.")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:
                raise convert(error) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise convert(error) from None

    return wrapper
