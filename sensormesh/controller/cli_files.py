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


def credentials_for(model, keys_dir):
    """The controller's credentials for deploy/status/stop/top: from --keys, or from the store
    `up` provisions when every device of the file is local (those devices run with its keys)."""
    from sensormesh.controller.keys import DEFAULT_DIR
    if keys_dir is None:
        if all(d.local for d in model.devices.values()) and os.path.exists(os.path.join(DEFAULT_DIR, "registry.json")):
            keys_dir = DEFAULT_DIR
        else:
            return None
    try:
        return runner.credentials(keys_dir)
    except PipelineError as e:
        raise click.ClickException(str(e))
