"""`sensormesh keys ...`: the controller's identity, device and reader identities, revocation.

Register with the main CLI:  cli.add_command(keys)  (from sensormesh.controller.keys_cli import keys)
Output names keys by fingerprint and path; private key material is never printed.
"""
import datetime
import json

import click

from sensormesh.controller.keys import DEFAULT_DIR, KeyStore, KeyStoreError


def _when(t):
    if not t:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _store(ctx):
    return ctx.find_object(KeyStore)


def _run(fn, *args):
    try:
        return fn(*args)
    except KeyStoreError as e:
        raise click.ClickException(str(e))


@click.group("keys")
@click.option("--dir", "store_dir", default=DEFAULT_DIR, show_default=True, envvar="SENSORMESH_KEYS",
              type=click.Path(file_okay=False), help="The key store directory (env SENSORMESH_KEYS).")
@click.pass_context
def keys(ctx, store_dir):
    """Create and manage the keys of the controller, devices and readers."""
    ctx.obj = KeyStore(store_dir)


@keys.command()
@click.option("--name", default="controller", show_default=True, help="The controller's name.")
@click.option("--force", is_flag=True, help="Replace an existing controller identity (the old key is revoked).")
@click.pass_context
def init(ctx, name, force):
    """Create the controller's identity (an X25519 key pair)."""
    st = _store(ctx)
    ent = _run(st.init, name, force)
    click.echo("controller %s  fingerprint %s" % (ent["name"], ent["fingerprint"]))
    click.echo("private key: %s (mode 0600)" % st.identity_path(ent["name"]))
    click.echo("trust store: %s" % st.trust_path())


@keys.command()
@click.argument("name")
@click.option("--role", type=click.Choice(["device", "reader"]), required=True,
              help="device: runs steps and opens pipes; reader: may make data requests.")
@click.option("--force", is_flag=True, help="Re-key an existing name (the old key is revoked).")
@click.pass_context
def issue(ctx, name, role, force):
    """Issue a key pair for a device or a reader named NAME."""
    st = _store(ctx)
    ent = _run(st.issue, name, role, force)
    click.echo("%s %s  fingerprint %s" % (role, name, ent["fingerprint"]))
    click.echo("private key: %s (mode 0600); provision it with `sensormesh keys export %s DIR`"
               % (st.identity_path(name), name))
    click.echo("trust store updated: %s (hand it to every device)" % st.trust_path())


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (public data only).")
@click.pass_context
def list_(ctx, as_json):
    """List every key: name, role, fingerprint, created, revoked."""
    ents = _run(_store(ctx).entries)
    if as_json:
        click.echo(json.dumps([{k: e[k] for k in ("name", "role", "fingerprint", "created", "revoked")}
                               for e in ents], indent=1))
        return
    if not ents:
        click.echo("no keys in %s (run `sensormesh keys init`)" % _store(ctx).root)
        return
    click.echo("%-20s %-10s %-32s %-16s %s" % ("NAME", "ROLE", "FINGERPRINT", "CREATED", "STATUS"))
    for e in ents:
        status = ("revoked " + _when(e["revoked"])) if e["revoked"] else "active"
        click.echo("%-20s %-10s %-32s %-16s %s" % (e["name"], e["role"], e["fingerprint"],
                                                  _when(e["created"]), status))


@keys.command()
@click.argument("name")
@click.pass_context
def revoke(ctx, name):
    """Revoke NAME's key: refused from the next connection of every side holding the new trust store."""
    st = _store(ctx)
    ent = _run(st.revoke, name)
    click.echo("revoked %s %s (fingerprint %s)" % (ent["role"], name, ent["fingerprint"]))
    click.echo("trust store updated: %s (hand it to every device)" % st.trust_path())


@keys.command()
@click.argument("name")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.pass_context
def export(ctx, name, outdir):
    """Write NAME's identity.json (0600) and the trust.json into OUTDIR, to copy onto the device."""
    for p in _run(_store(ctx).export, name, outdir):
        click.echo(p)
