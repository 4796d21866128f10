# A replay.Sender's rarely run parts: what a new connection does to its numbering (everything
# unacknowledged goes again, the announcement of where it starts, the receiver's "expect" skipping
# what it has) and taking a numbering back from the upstream's mark. replay.py has the rules and
# what a Sender runs per value; Sender finds these through __getattr__ (steps/__init__.py, Rarely),
# so this module is loaded per call and forgotten after it on a board running .mpy files. Each
# function takes the Sender first.


def restart(tx):
    """A new connection: everything unacknowledged goes again. Returns the first seq."""
    tx.jumped = False
    tx.sent = tx.base
    return tx.base


def skip_to(tx, expect, run):
    """The receiver says it wants `expect` next: skip what it has that is not sent yet."""
    if run == tx.run and type(expect) is int and tx.sent < expect <= tx.next_seq():
        tx.sent = expect
        if expect > tx.high:
            # values this process never sent that the receiver has (an earlier process of this
            # device sent them before it restarted and took the numbering back): they reached it,
            # so they count as sent, and in = out + pending + dropped holds
            tx.once += expect - (tx.high if tx.high > tx.base else tx.base)
            tx.high = expect


def adopt(tx, seq, run):
    """Take over a numbering handed back by the upstream's mark (a fresh sender only)."""
    tx.base = tx.mbase = tx.sent = tx.high = seq
    tx.run = run
    tx.adopted = True
    tx.buf = []
    if tx.spool is not None:
        tx.spool.clear()
    tx.mark = None


def announce(tx):
    """The body of the seq announcement for the current connection: [seq, run, mark, cap]
    (the receiver acknowledges often enough for a buffer of cap values)."""
    mark = tx.mark or None
    k = tx.sent - tx.mark_at
    if mark is not None and k > 0:
        # values between the mark and the next one sent are gone (evicted unacknowledged):
        # each entry says how many, [seq, run, k] (the rules)
        shifted = {}
        for e in mark:
            m = mark[e]
            if type(m) is list and len(m) == 2:
                shifted[e] = [m[0], m[1], k]
        mark = shifted or None
    return [tx.sent, tx.run, mark, tx.cap]
