"""Pieces every tab shares: the session id, turning library errors into messages, model readiness."""

from __future__ import annotations

import functools
import html
import logging
from dataclasses import dataclass, field

import gradio as gr

from ..errors import ConfigError, DprRagError
from .jobs import JobBusy
from .state import DEFAULT_MODEL, AppState, ModelEntry

log = logging.getLogger("dpr_rag.app")


def whole_number(value, name: str, default: int) -> int:
    """A number from the page (an int, or a float the slider sends) as an int; anything else is a ConfigError."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {str(value)[:20]!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {str(value)[:20]!r}")
    return int(number)


def session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def user_errors(fn):
    """The library's errors (bad file, bad option, busy slot...) become a gr.Error with their message; any other
    exception is logged and shown as a short internal-error message. (Gradio renders messages as HTML: escaped.)"""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DprRagError as e:
            raise gr.Error(html.escape(str(e), quote=False), duration=12, print_exception=False) from e
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            message = f"internal error ({type(e).__name__}: {e}); see the server log"
            raise gr.Error(html.escape(message, quote=False), duration=12) from e

    return wrapper


def index_note(state: AppState, model: ModelEntry, owner: str | None) -> tuple[str, bool]:
    """Why a model's dense index cannot be used yet, after starting its build if the build slot is free.
    Returns (message, whether a job is now running that the page should follow)."""
    job = state.index_jobs.current
    if job is not None and job.tag == f"model:{model.id}":
        return f"The dense index for {model.label} is being built: {job.describe()}.", True
    try:
        state.start_model_index(model.id, owner)
    except JobBusy as e:
        return f"The dense index for {model.label} is not built yet. {e}", True
    return (
        f"Started building the dense index of the live corpus for {model.label}; "
        "follow its progress at the top of the page and search again when it is ready."
    ), True


def model_dropdown(state: AppState, label: str, elem_id: str) -> gr.Dropdown:
    """A model list; its choices grow as models are trained, so values are checked by the app (`state.model`)
    rather than against the choices the page started with."""
    return gr.Dropdown(state.model_choices(), value=DEFAULT_MODEL, allow_custom_value=True, label=label, scale=3, elem_id=elem_id)


@dataclass
class Shared:
    """Components that several tabs read or update."""

    state: AppState
    timer: gr.Timer
    model_dropdowns: list[gr.Dropdown] = field(default_factory=list)
