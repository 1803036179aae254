# barsalign: `make demo` runs the main job on the synthetic default, `make test` runs the tests.
# Both create .venv first when it is missing; a second `make setup` installs nothing.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# disk a new .venv needs: 6.7 GB on x86_64, where torch's wheel is a CUDA build, and room to unpack
VENV_GB := 8
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup chromium test test-fast notebook-refs demo reports synth bench lint clean-reports

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || [ $$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}') -ge $(VENV_GB) ] || \
		{ echo "make setup: .venv needs about $(VENV_GB) GB free (torch's x86_64 wheel is a CUDA build);" \
		"$$(df -Ph . | awk 'NR==2 {print $$4}') free here" >&2; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name barsalign --display-name "barsalign (.venv)" >/dev/null
	touch $(STAMP)

chromium: setup  # the browser tests drive Debian's chromium; CI machines start without it
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	@echo "make chromium: $$(/usr/bin/chromium --version 2>/dev/null), playwright $$($(PY) -c \
		'from importlib.metadata import version; print(version("playwright"))')"

test: setup chromium
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# accept a changed notebook result: re-execute the notebooks (all, or NB=02_label,05_evaluate)
# with their test parameters and rewrite the contract cells' reference outputs in
# tests/notebook_refs/, then check them with nbval (review the diff, then commit)
notebook-refs: setup
	$(PY) -m pytest tests/test_nbval.py --update-notebook-refs=$(or $(NB),all)

synth: setup
	$(VENV)/bin/barsalign synth

demo: setup
	$(VENV)/bin/barsalign demo

reports: setup
	$(VENV)/bin/barsalign report

bench: setup
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

lint: setup
	$(VENV)/bin/ruff format --check barsalign tests benchmarks notebooks
	$(VENV)/bin/ruff check barsalign tests benchmarks notebooks

clean-reports:
	rm -rf reports/runs reports/index.html
