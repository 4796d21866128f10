# The errors the controller's pipeline half raises, in one place.
#
# Every error names the thing that is wrong (a step id, a device name, a parameter key) and
# what is wrong with it. Validation collects all problems it finds before raising, so a user
# fixing a pipeline file sees every mistake at once, not one per run.


class Problem:
    """One thing wrong: a message plus where it is (step id, device name, parameter key)."""

    __slots__ = ("message", "step", "device", "key", "section", "item", "origin")

    def __init__(self, message, step=None, device=None, key=None, section=None, item=None, origin=None):
        self.message = message
        self.origin = origin      # where the step is defined: "file.yaml:12:5" or "app.py:12"
        self.item = item          # index into a list-valued key (inputs[1]), if it is one entry
        self.step = step          # step id the problem is about, if any
        self.device = device      # device name the problem is about, if any
        self.key = key            # parameter / field name inside that step or device
        self.section = section    # "steps", "devices", "network", None = top level

    def subject(self):
        """'step 'w'', 'device 'esp-1'' or '' -- what the message is about."""
        if self.step is not None:
            return "step %r" % self.step
        if self.device is not None:
            return "device %r" % self.device
        return ""

    def __str__(self):
        parts = [p for p in (self.subject(), self.key) if p]
        where = ", ".join(parts)
        text = "%s: %s" % (where, self.message) if where else self.message
        return "%s: %s" % (self.origin, text) if self.origin else text

    def __repr__(self):
        return "Problem(%r)" % str(self)


class PipelineError(ValueError):
    """Base class: something about a pipeline, its inventory or its placement is wrong."""

    def __init__(self, problems):
        if isinstance(problems, (str, Problem)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem(str(p)) for p in problems]
        ValueError.__init__(self, self._text())

    def _text(self):
        if len(self.problems) == 1:
            return str(self.problems[0])
        return "%d problems:\n  %s" % (len(self.problems), "\n  ".join(str(p) for p in self.problems))

    @property
    def step(self):
        return self.problems[0].step if self.problems else None

    @property
    def device(self):
        return self.problems[0].device if self.problems else None

    @property
    def key(self):
        return self.problems[0].key if self.problems else None


class ModelError(PipelineError):
    """The graph or the inventory is invalid (cycles, dangling inputs, bad parameters...)."""


class ShippingError(PipelineError):
    """A user function cannot be shipped to a device as source (lambda, closure, no source...)."""


class PlacementError(PipelineError):
    """No placement satisfies the constraints (sensors, interpreters, CPU, memory, links)."""


class FileProblem(Problem):
    """A Problem located in a pipeline file: line and column are 1-based, key is a dotted path."""

    __slots__ = ("line", "column", "path")

    def __init__(self, message, line=None, column=None, path=(), step=None, device=None, key=None):
        Problem.__init__(self, message, step=step, device=device, key=key)
        self.line = line
        self.column = column
        self.path = tuple(path)

    def __str__(self):
        where = "line %d, column %d" % (self.line, self.column) if self.line else ""
        key = ".".join(str(p) for p in self.path)
        head = ": ".join(p for p in (where, key) if p)
        return "%s: %s" % (head, self.message) if head else self.message


class PipelineFileError(PipelineError):
    """A pipeline file is wrong: names the file, the line and column, the key and the problem."""

    def __init__(self, filename, problems):
        self.filename = filename
        PipelineError.__init__(self, problems)

    def _text(self):
        lines = []
        for p in self.problems:
            if not isinstance(p, FileProblem) or not p.line:
                lines.append("%s: %s" % (self.filename, p))
                continue
            key = ".".join(str(x) for x in p.path)
            lines.append("%s:%d:%d: %s%s" % (self.filename, p.line, p.column, key + ": " if key else "", p.message))
        if len(lines) == 1:
            return lines[0]
        return "%d problems in %s:\n  %s" % (len(lines), self.filename, "\n  ".join(lines))

    @property
    def line(self):
        p = self.problems[0]
        return getattr(p, "line", None)

    @property
    def column(self):
        p = self.problems[0]
        return getattr(p, "column", None)

    @property
    def path(self):
        return getattr(self.problems[0], "path", ())
