# The two README commands. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean parity lock

# requirements.lock pins every dependency (and theirs) at the version the README figures were
# measured with; pyproject.toml keeps the ranges, so `pip install -e .` still works unpinned.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel here, the standard build elsewhere.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Rewrite requirements.lock from what .venv holds now (after adding or upgrading a dependency in
# pyproject.toml and installing it into .venv). Local version labels are dropped (the CPU wheel
# torch 2.13.0+cpu is pinned as torch==2.13.0, which the standard build satisfies too); the
# project itself is left out (installed with --no-deps -e .).
lock:
	{ echo "# Every dependency of personsearch (runtime + dev) at the version the README figures were"; \
	  echo "# measured with: Python 3.11, Linux x86-64. Written by 'make lock' from .venv; used by"; \
	  echo "# 'make test' / 'make demo' (pip install -r requirements.lock, then --no-deps -e .)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^#' | sed -E 's/\+[A-Za-z0-9.]+$$//'; \
	} > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m personsearch.cli.demo

# Parity with the reference code (tests/models/test_seqnet_parity.py builds SeqNet's own model
# from its source in $(PERSONSEARCH_SEQNET_SOURCE); tests/ops/test_torchvision_parity.py checks our ops against
# torchvision's kernels). Both need an importable torchvision, which the local CPU torch of .venv
# lacks, so they run in a separate .venv-ref with the standard registry builds of torch and
# torchvision (about 5.5 GB; on Python 3.11 here pip takes them from the machine's disk), yacs
# for SeqNet's config, and this project installed without its torch pin (--no-deps).
REF_VENV := .venv-ref
REF_PY := $(REF_VENV)/bin/python
REF_STAMP := $(REF_VENV)/.installed
# SeqNet's source at commit edec285c, read at run time by the parity test (never copied here).
# The default is the CI layout, a checkout beside the repository; elsewhere give the folder:
# make parity PERSONSEARCH_SEQNET_SOURCE=/path/to/SeqNet (the test skips, saying why, without it).
PERSONSEARCH_SEQNET_SOURCE ?= $(abspath ../shared/reference/seqnet)

$(REF_STAMP): pyproject.toml
	test -x $(REF_PY) || $(PYTHON) -m venv $(REF_VENV)
	$(REF_PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 yacs==0.1.8
	$(REF_PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(r for r in p['dependencies'] + p['optional-dependencies']['dev'] \
	if not r.startswith(('torch', 'playwright'))))" > $(REF_VENV)/requirements.txt
	$(REF_PY) -m pip install -q -r $(REF_VENV)/requirements.txt
	$(REF_PY) -m pip install -q --no-deps -e .
	touch $(REF_STAMP)

parity: $(REF_STAMP)
	# torchvision's compiled ops must load here: otherwise the tests below would only skip.
	$(REF_PY) -c "import torch, torchvision; torch.ops.torchvision.nms; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	PERSONSEARCH_SEQNET_SOURCE=$(PERSONSEARCH_SEQNET_SOURCE) $(REF_PY) -m pytest -q -ra tests/models/test_seqnet_parity.py tests/ops/test_torchvision_parity.py

clean:
	rm -rf $(VENV) $(REF_VENV) out
