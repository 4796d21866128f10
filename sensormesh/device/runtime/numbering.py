# What a replay Sender (replay.py) does when a connection starts or a numbering changes hands:
# sending again from the oldest unacknowledged value, skipping what the receiver already has,
# taking over a numbering. Sender finds these through
# __getattr__ (steps/__init__.py, Rarely): this module is loaded per call and forgotten after it
# on a board running .mpy files. The rules are in replay.py; each function takes the Sender first.


def restart(tx):
    """A new connection: everything unacknowledged goes again. Returns the first seq."""
    tx.jumped = False
    tx.sent = tx.base
    return tx.base


def skip_to(tx, expect, run):
    """The receiver says it wants `expect` next: skip what it has that is not sent yet."""
    if run == tx.run and type(expect) is int and tx.sent < expect <= tx.next_seq():
        tx.sent = expect


def adopt(tx, seq, run):
    """Take over a numbering handed back by the upstream's mark (a fresh sender only)."""
    tx.base = tx.mbase = tx.sent = tx.high = seq
    tx.run = run
    tx.adopted = True
    tx.buf = []
    if tx.spool is not None:
        tx.spool.clear()
    tx.mark = None
