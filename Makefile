# The verbs. Each sets up what it needs: a venv with the host tools and socat.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MICROPYTHON := $(VENV)/bin/micropython
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/default.json
TCP_PORT ?= 5020
RUN_DIR ?= run
# Address the host run's Modbus TCP server listens on (make run HOST=0.0.0.0 for every
# interface). Taken from make's command line only: tcsh exports HOST as the machine's
# name, which would silently change where the meter listens.
ifneq ($(origin HOST),command line)
HOST := 127.0.0.1
endif
PYTEST_ARGS ?=

.PHONY: setup run test bench soak clean socat wasm32 mosquitto umqtt deploy repl logs backup \
	restore rs485-bench need-port chrony

setup: $(STAMP) socat wasm32 mosquitto chrony umqtt

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# socat links the RS485 pty pairs on the host (Debian package).
socat:
	@command -v socat >/dev/null 2>&1 || { \
	  echo "installing socat (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq socat >/dev/null; }

# mosquitto: the MQTT broker tests/test_mqtt.py starts (Debian package).
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mosquitto >/dev/null; }

# chrony: the NTP server tests/test_walltime.py starts as its own chronyd (Debian package).
# The tests never use a system chronyd the package may start: theirs runs with -x (the
# system clock is never set), on a free port, from a config in the test's directory.
chrony:
	@command -v chronyd >/dev/null 2>&1 || [ -x /usr/sbin/chronyd ] || { \
	  echo "installing chrony (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chrony >/dev/null; }

# The MQTT client the firmware wraps (firmware/mqtt.py): micropython-lib's umqtt.simple,
# the pinned sdist from PyPI (MIT), fetched from pip's index by tools/fetch_sdist.py,
# checked (sha256) and unpacked unmodified into lib/ (not in git). MicroPython boards
# have /lib on sys.path, where `mpremote mip install umqtt.simple` puts the same file; the host run and the tests add lib to MICROPYPATH.
UMQTT_SHA256 := b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f
umqtt: lib/umqtt/simple.py

lib/umqtt/simple.py: $(STAMP)
	$(PY) tools/fetch_sdist.py micropython-umqtt.simple 1.3.4 $(UMQTT_SHA256) \
	  umqtt/simple.py lib/umqtt/simple.py

# The 32-bit MicroPython (official WebAssembly port, npm, pinned in tools/wasm/package.json)
# under node (Debian's nodejs and npm when missing).
WASM_PKG := tools/wasm/node_modules/@micropython/micropython-webassembly-pyscript/package.json
wasm32: $(WASM_PKG)

$(WASM_PKG): tools/wasm/package.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "installing nodejs and npm (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	cd tools/wasm && npm install --no-audit --no-fund --no-package-lock --loglevel=error
	touch $@

run: setup
	$(PY) tools/host_run.py --scenario $(SCENARIO) --tcp-port $(TCP_PORT) --host $(HOST) \
	  --run-dir $(RUN_DIR) $(if $(CONFIG),--config $(CONFIG))

# Two workers (pytest-xdist): the suite's tests wait on MicroPython runtimes, host runs
# and real time; TEST_WORKERS=0 runs them in this process, one after the other.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench.py --out bench/results.json

# Ten years of 1 s energy increments through the real counter code (slow: minutes).
soak: setup
	MICROPYPATH=.frozen:$(CURDIR) $(MICROPYTHON) tools/mpy/soak_energy.py 1 50000

# A board over USB (PORT=/dev/ttyACM0) or the unix port behind socat (PORT=socket://..,
# ROOT=dir): README "Deploying to a board". BOARD: a boards/ directory with a board.py.
DEPLOY := $(PY) tools/deploy.py --port $(PORT) $(if $(ROOT),--root $(ROOT))
need-port:
	@test -n "$(PORT)" || { echo "PORT=<device> is needed (e.g. /dev/ttyACM0, socket://127.0.0.1:7000)"; exit 2; }

deploy: $(STAMP) need-port
	@test -n "$(BOARD)" || { echo "BOARD=<name> is needed: $$(cd boards && ls */board.py | sed 's,/board.py,,' | tr '\n' ' ')"; exit 2; }
	$(DEPLOY) deploy --board $(BOARD) $(if $(CONFIG),--config $(CONFIG))

repl: $(STAMP) need-port
	$(DEPLOY) repl

logs: $(STAMP) need-port
	$(DEPLOY) logs

backup: $(STAMP) need-port
	@test -n "$(OUT)" || { echo "OUT=<file> is needed"; exit 2; }
	$(DEPLOY) backup --out $(OUT)

restore: $(STAMP) need-port
	@test -n "$(IN)" || { echo "IN=<file> is needed"; exit 2; }
	$(DEPLOY) restore --in $(IN)

# RS485 bench test of a meter on a serial line (README "RS485 bench test").
BAUD ?= 38400
PARITY ?= N
STOP ?= 2
ADDR ?= 1
COUNT ?= 100
rs485-bench: $(STAMP) need-port
	$(PY) tools/rs485_bench.py --device $(PORT) --baud $(BAUD) --parity $(PARITY) \
	  --stop $(STOP) --address $(ADDR) --count $(COUNT)

clean:
	rm -rf $(VENV) lib run bench/results.json .pytest_cache tools/wasm/node_modules
