# Frozen firmware for the rp2040_w5500 board: the port's own modules (asyncio
# among them), then firmware/, drivers/ and this board's module under their
# package names. Paths are relative to this file (MicroPython manifest functions:
# include, package).
#   make -C ports/PORT BOARD=... FROZEN_MANIFEST=$PWD/boards/rp2040_w5500/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
# MQTT (firmware/mqtt.py) wraps micropython-lib's umqtt.simple, unmodified.
require("umqtt.simple")
package("firmware", base_path="../..")
package("drivers", base_path="../..")
package("boards", files=("contract.py", "realboard.py", "rp2040_w5500/board.py"),
        base_path="../..")
