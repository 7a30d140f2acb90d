"""The click that Typer runs on: Typer >= 0.23 vendors it as ``typer._click``, older Typer uses click."""

try:
    from typer import _click as click  # type: ignore[attr-defined]
    from typer._click import exceptions  # type: ignore[attr-defined]
    from typer._click import globals as click_globals  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Typer
    import click  # type: ignore[no-redef]
    from click import exceptions  # type: ignore[no-redef]
    from click import globals as click_globals  # type: ignore[no-redef]

__all__ = ["click", "click_globals", "exceptions"]
