# What the controller's commands share when they start from a pipeline file: loading it with
# the file's own error messages, and the controller's credentials for its devices. Used by
# deploy_cli.py (up, deploy, status, stop) and observe/cli.py (top).
import os

import click

from sensormesh.controller import runner
from sensormesh.controller.errors import PipelineError


def load_or_exit(file):
    """The model of pipeline FILE; a broken file ends the command with its message."""
    from sensormesh.controller.pipeline_file import load_model
    try:
        return load_model(file)
    except PipelineError as e:
        raise click.ClickException(str(e))


def note_unstarted_local(model, file):
    """Tell (on stderr) about the `local: true` devices without an address that nothing serves
    here: deploy, status, stop and top reach such a device at the Unix socket `sensormesh up`
    makes for the directory it runs in, so from another directory it only looks down. One line
    for all of them: a fleet of local devices is one mistake, not hundreds."""
    from sensormesh.controller.names import name_list
    missing = [d for d in model.devices.values()
               if d.local and d.main_address is None and not d.unix and not os.path.exists(d.unix_path)]
    if not missing:
        return
    advice = ("`sensormesh up` makes for the directory it runs in, and nothing listens there; run this command "
              "in the directory where `sensormesh up %s` runs (this is %s)" % (file, os.getcwd()))
    if len(missing) == 1:
        d = missing[0]
        click.echo("! %s is local: true without an address: commands reach it at unix:%s, the socket %s"
                   % (d.name, d.unix_path, advice), err=True)
        return
    folders = sorted({os.path.dirname(d.unix_path) for d in missing})
    where = ("unix sockets in %s/" % folders[0] if len(folders) == 1
             else "unix sockets (%s)" % ", ".join("unix:" + d.unix_path for d in missing[:3]) + ", ...")
    click.echo("! %s are local: true without an address: commands reach them at their %s, the sockets %s"
               % (name_list([d.name for d in missing], last=" and "), where, advice), err=True)


def credentials_for(model, keys_dir, insecure=False):
    """The controller's credentials for deploy/status/stop/top: from --keys, or from the store
    `up` provisions when every device of the file is local (those devices run with its keys);
    None with --insecure (plaintext, for devices that run without keys)."""
    from sensormesh.controller.keys import DEFAULT_DIR
    if insecure:
        if keys_dir is not None:
            raise click.UsageError("--insecure talks to the devices without keys: give it or --keys, not both")
        return None
    if keys_dir is None:
        if all(d.local for d in model.devices.values()) and os.path.exists(os.path.join(DEFAULT_DIR, "registry.json")):
            keys_dir = DEFAULT_DIR
        else:
            return None
    try:
        return runner.credentials(keys_dir)
    except PipelineError as e:
        raise click.ClickException("%s (devices that run without keys: --insecure)" % e)


class Seconds(click.ParamType):
    """A number of seconds for an option: finite, more than 0, or 0 too when `zero` says what 0
    means ("until Ctrl-C"). A negative, NaN or infinite value is refused where the command line
    is parsed, naming the option (not found out later as a run that ends at once)."""
    name = "seconds"

    def __init__(self, zero=None, least=None):
        self.zero = zero
        self.least = least        # the smallest value taken, when more than 0

    def convert(self, value, param, ctx):
        import math
        if isinstance(value, float) and math.isfinite(value):
            v = value
        else:
            try:
                v = float(value)
            except (TypeError, ValueError):
                self.fail("%r is not a number of seconds" % (value,), param, ctx)
        if not math.isfinite(v):
            self.fail("%r is not a number of seconds: give a finite number%s" % (value, self._hint()), param, ctx)
        if v < 0 or (v == 0 and self.zero is None):
            self.fail("%s: give a number of seconds %s" % (value, "of 0 or more" if self.zero else "more than 0")
                      + self._hint(), param, ctx)
        if self.least is not None and v < self.least:
            self.fail("%s: give a number of seconds of at least %g" % (value, self.least), param, ctx)
        return v

    def _hint(self):
        return " (0 = %s)" % self.zero if self.zero else ""


class Count(click.ParamType):
    """A count for an option: a whole number, 0 or more when `zero` says what 0 means, else 1 or more."""
    name = "integer"

    def __init__(self, zero=None):
        self.zero = zero

    def convert(self, value, param, ctx):
        try:
            v = value if type(value) is int else int(str(value).strip())
        except (TypeError, ValueError):
            self.fail("%r is not a whole number" % (value,), param, ctx)
        if v < 0 or (v == 0 and self.zero is None):
            self.fail("%s: give a whole number %s%s" % (value, "of 0 or more" if self.zero else "of 1 or more",
                                                         " (0 = %s)" % self.zero if self.zero else ""), param, ctx)
        return v
