"""A seeded random fault run with real device processes in the namespace lab (root): a
MicroPython source streams numbered values through one of two gateways to a CPython sink, driven
by the product's Supervisor, while faults drawn from a seeded generator hit it for up to 60 s:
SIGSTOP freezes (sink, gateway, source), nftables link cuts (gateway, sink), the sink killed with
SIGKILL and started again (given its steps back), and the gateway carrying the stream killed
with the second one available. The sink must get every value exactly once, in order, within the
replay bound: every hop's buffer holds the whole stream (after an nftables cut TCP comes back
only at its next retransmission, seconds later, so a board's default 1000 values may not last). SENSORMESH_FAULT_SEED picks another seed."""
import os
import random
import signal
import time

import pytest

from procs import Recorder
from test_gateways import TWO_GW, _nft_cut, _nft_heal, in_ns, pipeline_file, start_devices
from sensormesh.controller.supervisor import Supervisor

N = 5000          # values at 250 per second: 20 s of stream, faults in its first 14 s
RATE = 250
RUN_S = 60        # the whole run, faults and recovery, is bounded by this


def plan(rnd):
    """[(start s, kind, target, duration s)]: six faults, one of each kind at least once where
    it fits, in random order, at random times and of random lengths."""
    kinds = ["freeze", "freeze", "cut", "cut", "kill-sink", "kill-gateway"]
    rnd.shuffle(kinds)
    out = []
    t = 1.5
    for k in kinds:
        t += rnd.uniform(0.5, 1.5)
        if k == "freeze":
            target = rnd.choice(["pc", "gw", "esp-1"])
        elif k == "cut":
            target = rnd.choice(["gw", "pc"])
        elif k == "kill-sink":
            target = "pc"
        else:
            target = "gw"
        dur = round(rnd.uniform(0.5, 2.0), 2)
        out.append((round(t, 2), k, target, dur))
        t += dur
    return out


def outputs(procs):
    """The last lines each device printed (for a failure's report); reads what is there, bounded."""
    import select
    out = []
    for host, p in sorted(procs.items()):
        data = b""
        if p.stdout is None or p.stdout.closed:
            continue
        fd = p.stdout.fileno()
        for _ in range(64):
            if not select.select([fd], [], [], 0.05)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        lines = data.decode(errors="replace").splitlines()[-25:]
        out.append("--- %s\n%s" % (host, "\n".join(lines)))
    return "\n".join(out)


@pytest.mark.netns
def test_seeded_random_faults_with_real_processes_lose_and_repeat_nothing(make_lab, tmp_path):
    seed = int(os.environ.get("SENSORMESH_FAULT_SEED", "20261130"))
    faults = plan(random.Random(seed))
    lab = make_lab(TWO_GW, blocked="reject")
    specs = {"esp-1": ("micropython", "counter@0"), "gw-1": ("cpython", "counter@0"),
             "gw-2": ("cpython", "counter@0"), "pc": ("cpython", "counter@0")}
    procs = start_devices(lab, specs)
    model = pipeline_file(tmp_path, lab, TWO_GW, {h: s[0] for h, s in specs.items()},
                          {"s": {"type": "source", "sensor": "counter", "count": N, "rate": RATE,
                                 "on": "esp-1", "batch": 10, "buffer": N}},
                          {"k": {"type": "callback", "input": "s", "on": "pc", "name": "out"}})
    rec = Recorder()
    log = []
    state = {"i": 0, "active": None, "t0": None, "restart": []}
    frozen = []
    cut = []

    def gateway(sup):
        return sup.placement.pipes[0].route[1]

    def pid_of(host):
        return procs[host].pid

    with in_ns(lab.ns("controller")):
        sup = Supervisor(model, "edge", timeout=4.0, interval=0.5, epoch=1)
        try:
            sup.deploy()
            state["t0"] = time.monotonic()

            def end_fault():
                kind, target = state["active"][1], state["active"][2]
                if kind == "freeze":
                    os.kill(frozen.pop(), signal.SIGCONT)
                elif kind == "cut":
                    _nft_heal(lab, cut.pop())
                elif kind == "kill-sink":
                    procs["pc"] = start_devices(lab, {"pc": specs["pc"]})["pc"]
                    state["restart"].append("pc")
                log.append("%.1f end %s %s" % (time.monotonic() - state["t0"], kind, target))
                state["active"] = None

            def until():
                now = time.monotonic() - state["t0"]
                if state["restart"] and sup.restarted(state["restart"]):
                    state["restart"] = []
                act = state["active"]
                if act is not None and now >= act[0] + act[3]:
                    end_fault()
                if state["active"] is None and state["i"] < len(faults) and now >= faults[state["i"]][0]:
                    f = faults[state["i"]]
                    state["i"] += 1
                    start, kind, target, dur = f
                    host = gateway(sup) if target == "gw" else target
                    if kind == "freeze":
                        pid = pid_of(host)
                        os.kill(pid, signal.SIGSTOP)
                        frozen.append(pid)
                    elif kind == "cut":
                        _nft_cut(lab, host)
                        cut.append(host)
                    elif kind == "kill-sink":
                        os.kill(pid_of("pc"), signal.SIGKILL)
                        procs["pc"].wait(10)
                    else:
                        lab.kill(host)            # for good: the other gateway takes over
                    log.append("%.1f %s %s for %.1fs" % (now, kind, host, dur))
                    state["active"] = (now, kind, host, dur)
                got = rec.got("k")
                return state["i"] == len(faults) and state["active"] is None and len(got) >= N
            sup.watch(rec.deliver, until, timeout=RUN_S, on_event=rec.event)
            got = rec.got("k")
            detail = "seed %d, faults %s\n%s\n%s\n%s" % (seed, log, sup.losses, rec.text(), outputs(procs))
            assert state["i"] == len(faults) and state["active"] is None, detail
            # (a source redeployed at a new epoch counts `count` afresh: more than N may follow)
            assert len(got) >= N and got == list(range(len(got))), \
                "%d values, first wrong at %s; %s" % (len(got), next((i for i in range(len(got)) if got[i] != i), None), detail)
            assert sup.losses == [], detail
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            for host in cut:
                _nft_heal(lab, host)
            sup.close()
