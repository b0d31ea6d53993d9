# Two commands on a fresh machine:
#   make demo   install, build the local Fashion-MNIST competition, train 5 folds, score the submission
#   make test   install, run the test suite
PYTHON ?= python3
COMPTK = $(PYTHON) -m comptk
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
RUN ?= fashion-demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install fashion-data demo test bench

install:
	$(PYTHON) -m pip install -q -e ".[test,postgres]"

fashion-data:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist)

demo: install fashion-data
	@test -d data/fashion || $(COMPTK) prepare fashion --train-n 12000
	$(COMPTK) train fashion --folds 5 --name $(RUN)
	$(COMPTK) score submissions/$(RUN).csv --answers data/fashion/answers.csv

test: install
	$(PYTHON) -m pytest -q

bench: install fashion-data
	$(PYTHON) benchmarks/fashion_core.py
