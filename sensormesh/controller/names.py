# Device names in messages: one way everywhere to list them, to say a device's domain and to
# say that a device has no address. A fleet of hundreds of boards named board-1..board-400
# reads as "board-1..board-400", not as four hundred names.
import re

# What a device in no named domain is said to be in: a file without `network:` puts every device
# in one domain the user never named (topology.DEFAULT_DOMAIN), which messages do not show.
NO_DOMAIN = "(in no named domain)"

# How many names (or runs of numbered names) a list shows before it says how many more there are.
SHOWN = 6

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def natural_key(name):
    """Sort key: board-2 before board-10."""
    m = _NUMBERED.match(str(name))
    if m is None:
        return (str(name), -1, "")
    return (m.group(1), int(m.group(2)), m.group(2))


def natural_sorted(names):
    return sorted(names, key=natural_key)


def _runs(names):
    """Consecutive numbered names with one prefix as ranges: ["board-1..board-40", "pc"]."""
    out = []
    run = []        # [(prefix, number, name)] of the run being collected

    def close():
        if len(run) >= 3:
            out.append("%s..%s" % (run[0][2], run[-1][2]))
        else:
            out.extend(r[2] for r in run)
        del run[:]
    for name in natural_sorted(set(map(str, names))):
        m = _NUMBERED.match(name)
        if m is None or m.group(2).startswith("0") and len(m.group(2)) > 1:
            close()
            out.append(name)
            continue
        prefix, n = m.group(1), int(m.group(2))
        if run and (run[-1][0] != prefix or run[-1][1] + 1 != n):
            close()
        run.append((prefix, n, name))
    close()
    return out


def name_list(names, shown=SHOWN, what="devices", last=", "):
    """Names for a message, compact: "a, b, c" ("a, b and c" with last=" and "); runs of
    numbered names as "board-1..board-40"; beyond `shown` entries "40 devices: a, b, c, ... and
    37 more". Empty: "none"."""
    names = list(names)
    if not names:
        return "none"
    parts = _runs(names)
    if len(parts) <= shown:
        if len(parts) == 1:
            return parts[0]
        return ", ".join(parts[:-1]) + last + parts[-1]
    n = len(set(map(str, names)))
    return "%d %s: %s, ... and %d more" % (n, what, ", ".join(parts[:shown - 1]),
                                          n - _count(parts[:shown - 1]))


def _count(parts):
    n = 0
    for p in parts:
        if ".." in p:
            a, b = p.split("..", 1)
            ma, mb = _NUMBERED.match(a), _NUMBERED.match(b)
            n += int(mb.group(2)) - int(ma.group(2)) + 1
        else:
            n += 1
    return n


def domains_text(domains):
    """"domain lab", "domains lab, office", or NO_DOMAIN for none (or the unnamed one)."""
    doms = sorted(d for d in domains if d is not None and not is_unnamed(d))
    if not doms:
        return NO_DOMAIN
    return "domain%s %s" % ("s" if len(doms) > 1 else "", ", ".join(doms))


def is_unnamed(domain):
    """True for the domain of a file without `network:` (a name the user never wrote)."""
    return isinstance(domain, Unnamed)


class Unnamed(str):
    """The name of the one domain of a file without `network:`: equal to the name code uses
    (topology.DEFAULT_DOMAIN), shown as NO_DOMAIN."""
    __slots__ = ()


def named_domains_of(topology):
    """topology.domains_of, with the domain of a file without `network:` left out."""
    def domains_of(device):
        return {d for d in topology.domains_of(device) if not is_unnamed(d)}
    return domains_of


def address_text(address):
    """A device's address for a message, and a clear phrase when it has none."""
    if address is None or address == "":
        return "no address (give it `address: host:port`, or mark it `local: true`)"
    return str(address)
