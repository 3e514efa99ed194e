# The two commands of the README. Both install what they need first (Debian 12, as root).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: deps demo test lint bench bench-keystone bench-api bench-lab bench-dataplane bench-e2e bench-neutron bench-scale bench-mirror clean

deps:
	./scripts/install-deps.sh

demo: deps
	$(PYTHON) -m taas.demo

test: deps
	$(PYTHON) -m ruff check taas tests bench
	$(PYTHON) -m pytest -ra $(PYTEST_ARGS)

lint: deps
	$(PYTHON) -m ruff check taas tests bench

bench-keystone: deps
	$(PYTHON) -m bench.keystone_bench

bench-api: deps
	$(PYTHON) -m bench.api_bench

bench-lab: deps
	$(PYTHON) -m bench.lab_bench

bench-dataplane: deps
	$(PYTHON) -m bench.dataplane_bench

bench-e2e: deps
	$(PYTHON) -m bench.e2e_bench

bench-neutron: deps
	$(PYTHON) -m bench.neutron_bench

bench-scale: deps
	$(PYTHON) -m bench.scale_bench

bench-mirror: deps
	$(PYTHON) -m bench.mirror_bench

# every benchmark, one after the other (figures print with the machine they ran on)
bench: bench-api bench-lab bench-dataplane bench-e2e

clean:
	-taas lab down --all
	rm -rf .pytest_cache build *.egg-info
