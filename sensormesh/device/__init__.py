# The device side of sensormesh: everything a device process imports, and nothing else. It
# runs unchanged on CPython and MicroPython, and imports nothing of sensormesh outside this
# folder, so this folder, compiled, is what `sensormesh board deploy` puts on a board.
# Kept empty: importing any device module runs this file first. Layout: docs/architecture.md.
