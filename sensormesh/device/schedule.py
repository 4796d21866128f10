# Timing helpers every device part shares: the fixed sampling grid, sparse logging and a pipe's
# redial backoff (either end's). Pure functions, no loop of their own: the caller owns the
# timers. (A forwarder's backoff is forward.Redial.)

# A stalled loop (a long GC pause, a blocking flash write, a slow handler) does not try to catch
# up more than this many samples at once: reading 100 values back to back already takes a board
# tens of ms, and values read late in a rush carry no information about the missed moments. The
# rest of the missed slots are counted ("missed") instead.
MAX_CATCH_UP = 100


def grid_due(s, now):
    """How many slots of s's fixed grid (slot k at s.t0 + k * s.period) are due at `now` and
    not taken yet. After a stall longer than MAX_CATCH_UP slots, all but the newest are
    counted in s.missed and marked taken. s has t0, period, taken and missed."""
    due = int((now - s.t0) / s.period) + 1 - s.taken
    if due > MAX_CATCH_UP:
        s.missed += due - 1
        s.taken += due - 1
        due = 1
    return due


def wait_ms(target, now):
    """Whole ms from now until target, rounded up (waking early would only find nothing due
    and spin); 0 if target has passed."""
    wait = target - now
    ms = int(wait)
    if ms < wait:
        ms += 1
    return ms if ms > 0 else 0


def sparse(n):
    """True for n = 1, 2, 4, 8...: log the 1st, 2nd, 4th... occurrence of a repeating event."""
    return n > 0 and n & (n - 1) == 0


# Pauses between dials of a pipe whose other end is gone or refuses it. At most 1 s: a
# restarted device gets its values back within a second of listening again (or of being
# deployed again).
RETRY_MS = (100, 200, 500, 1000)
# A pipe that keeps failing logs its first failure and then every this many.
LOG_EVERY_REDIALS = 10


def redial_delay(pipe):
    """ms a pipe (either end) waits before it dials again, counted in pipe.redials: RETRY_MS in
    turn, then its last one. The count starts over once the other end shows it took the link
    (a pipe_out: an acknowledgement, or the receiver saying where it stands; a pipe_in: the
    sender's announcement), so a link that dropped after working is redialed quickly again. A
    connection that comes up and is refused ("unknown-edge" while the other end waits for its
    deployment) does not start it over: on a keyed link each dial costs both ends a handshake,
    and such a pipe dialed ten times a second for as long as the refusal lasted."""
    n = pipe.redials
    pipe.redials = n + 1
    return RETRY_MS[n] if n < len(RETRY_MS) else RETRY_MS[-1]
