"""Sphinx extension: an inline <script> registered after the HTML builder started is written once.

Sphinx 7 (the series Jupyter Book 1 requires) writes such a script twice into every page: once
from the builder's own list, once more from the extension registry, because the registry copy is
added back under the file name '' instead of None and so escapes the duplicate check
(sphinx-doc/sphinx#13402, fixed in Sphinx 8.2). sphinx-thebe registers its configuration,
`const THEBE_JS_URL = ...`, exactly that way, and the second copy throws "Identifier
'THEBE_JS_URL' has already been declared" in the console of every page of the book.

The fix: remember how many scripts the registry held when the builder started; once the sources
are read (and before the pages are written) drop the later inline ones from the registry: the
builder already has each of them.
"""


def _remember_registry(app):
    app._inline_scripts_once_start = len(app.registry.js_files)


def _drop_late_inline_scripts(app, env):
    start = getattr(app, "_inline_scripts_once_start", None)
    if start is None or not hasattr(app.builder, "add_js_file"):
        return
    late = app.registry.js_files[start:]
    app.registry.js_files[start:] = [(name, attrs) for name, attrs in late if name is not None]


def setup(app):
    app.connect("builder-inited", _remember_registry, priority=1)  # before other extensions' handlers
    app.connect("env-updated", _drop_late_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
