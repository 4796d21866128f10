# `sensormesh plan FILE`: place a pipeline file's steps and print where they would run, why,
# and the expected traffic per link, without deploying anything.
#
# Registered in sensormesh/cli.py with:  main.add_command(plan)
import json
import math

import click

from sensormesh.controller.errors import PipelineError
from sensormesh.controller.placement import STRATEGIES


def _seconds(ctx, param, value):
    """--time-limit: a positive, finite number of seconds."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter("must be a positive number of seconds, not %g" % value)
    return value


def _fraction(ctx, param, value):
    """--headroom: a number in [0.05, 1] (click's range lets nan through)."""
    if not 0.05 <= value <= 1.0:
        raise click.BadParameter("must be a fraction between 0.05 and 1, not %g" % value)
    return value


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--strategy", "-s", type=click.Choice(STRATEGIES), default=None,
              help="central: all on the strongest device; edge: next to the sources; "
                   "optimal: least traffic (ILP). Default: optimal, or edge (with a warning) when "
                   "optimal's problem is too large.")
@click.option("--assignments", "show_assignments", is_flag=True,
              help="Also print the assignment each device would get (JSON).")
@click.option("--time-limit", type=float, default=60.0, show_default=True, callback=_seconds,
              help="Seconds the optimal strategy's solver may take.")
@click.option("--headroom", type=float, default=0.8, show_default=True, callback=_fraction,
              help="Fraction of a device's CPU estimate placement may fill (0.05 to 1).")
def plan(file, strategy, show_assignments, time_limit, headroom):
    """Show where the steps of pipeline FILE would run (no deployment)."""
    from sensormesh.controller.pipeline_file import load_model
    try:
        model = load_model(file)
        placement = model.place(strategy, time_limit=time_limit, cpu_headroom=headroom)
        assignments = placement.assignments() if show_assignments else None
    except PipelineError as e:
        raise click.ClickException(str(e))
    click.echo("pipeline %s: %d steps on %d devices" % (model.name, len(model.steps), len(model.devices)))
    if model.network is not None and model.topology is None:
        click.echo("note: the network: section is not applied yet (no topology module); "
                   "every device pair counts as one hop")
    for w in model.warnings:
        click.echo("warning: %s" % w)
    if placement.fallback:
        click.echo("warning: %s" % placement.fallback)
    click.echo("")
    click.echo(placement.table())
    describe = getattr(model.topology, "describe", None)
    if callable(describe):
        text = describe()
        click.echo("")
        click.echo("\n".join(text) if isinstance(text, (list, tuple)) else text)
    if assignments is not None:
        click.echo("")
        click.echo(json.dumps(assignments, indent=2))
