"""Emulated networks for local devices (CPython only, controller side).

  spec.py        the `--network` syntax: conditions (delay, jitter, loss, rate) per domain or link
  shaping.py     the shaping relay process that applies them to TCP connections in user space
  namespaces.py  Linux network namespaces laid out from a pipeline file's `network:` section
  state.py       what an emulation created, recorded in .sensormesh/, removed after a crash
  emulation.py   the address plan and the relays for `sensormesh up --network` (loopback or
                 namespaces), reused by experiments

docs/experiments.md ("Emulated networks") describes the syntax, how it works and its accuracy.
"""
