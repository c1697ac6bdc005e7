# Two commands do everything: `make book` and `make test`. Both create .venv when missing
# and (re)install the package editable whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BOOK_HTML := _build/html/index.html

.PHONY: book test setup clean bench-setup

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
# cells marked NBVAL_CHECK_OUTPUT).
test: $(STAMP)
	LATENTLAB_PROFILE=smoke $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax tests book

# Measures the setup budgets (make test and make book from a fresh clone) and prints them.
bench-setup:
	.ci/bench-setup

clean:
	rm -rf _build $(VENV)
