"""mypyc's settings for a class (``mypy_extensions.mypyc_attr``) in modules that run
compiled or not: mypy's extensions where they are installed (wherever mypyc built the
modules), and where they are not (an image that runs the pure Python modules), a
decorator that changes nothing, as theirs does at run time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*attrs, **settings):
            return lambda cls: cls


__all__ = ["mypyc_attr"]
