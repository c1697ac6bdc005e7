# Two commands do everything: `make book` and `make test`. Both create .venv when missing
# and (re)install the package editable whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOOK_HTML := _build/html/index.html

.PHONY: book test setup clean bench-setup check-book chromium

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "latentlab needs Python 3.10 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (latentlab)" >/dev/null
	@touch $(STAMP)

# Executes the chapters this machine can run (GPU chapters keep their stored outputs),
# with a cache so unchanged chapters are not re-run, and builds HTML into _build/html.
book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output . --keep-going
	@test -f $(BOOK_HTML) || { echo "book build failed: $(BOOK_HTML) missing"; exit 1; }
	@echo ""
	@echo "The book is ready: open file://$(CURDIR)/$(BOOK_HTML)"

# Unit tests, then every notebook in the smoke profile under nbval (outputs checked only in
# cells marked NBVAL_CHECK_OUTPUT), then, when the book is built, the browser check of its
# pages (check-book). With a built book Chromium is made sure of before pytest, so that the
# checker's own tests (tests/test_check_book.py) run instead of skipping.
test: $(STAMP)
	@if [ -f $(BOOK_HTML) ]; then $(MAKE) --no-print-directory chromium; fi
	LATENTLAB_PROFILE=smoke $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax tests book
	@if [ -f $(BOOK_HTML) ]; then \
		$(MAKE) --no-print-directory check-book; \
	else \
		echo "Browser check of the book skipped: the book is not built ($(BOOK_HTML) missing; make book, then make check-book)"; \
	fi

# Opens every page of _toc.yml in the built book in headless Chromium (tools/check_book.py):
# no console error and no request off this machine, math typeset, images loaded, sliders move
# their image, launch notes, internal links, page sizes; screenshots in _build/screenshots/.
check-book: $(STAMP) chromium
	@test -f $(BOOK_HTML) || { echo "check-book: $(BOOK_HTML) missing; run make book first"; exit 1; }
	$(BIN)/python tools/check_book.py --html _build/html --screenshots _build/screenshots

# Debian's chromium, installed quietly when it is missing and this user may install it (root, or
# sudo without a password); otherwise how to install it, and a failure. CHROMIUM=/path/to/chrome
# names another Chromium build (tools/check_book.py uses it too).
chromium:
	@if { [ -n "$$CHROMIUM" ] && [ -x "$$CHROMIUM" ]; } || command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Chromium is missing: installing Debian's chromium (apt-get install --no-install-recommends chromium)"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $$SUDO apt-get update -qq >/dev/null && \
		     $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
		|| true; \
	fi; \
	command -v chromium >/dev/null 2>&1 || { \
		echo "Chromium is needed for the browser check of the book and could not be installed here."; \
		echo "Install it, then run make check-book again:  sudo apt-get install --no-install-recommends chromium"; \
		echo "(or point CHROMIUM=/path/to/chrome at another Chromium build)"; \
		exit 1; }

# Measures the setup budgets (make test and make book from a fresh clone) and prints them.
bench-setup:
	.ci/bench-setup

clean:
	rm -rf _build $(VENV)
