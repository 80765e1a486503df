"""``plan --out FILE`` and ``apply FILE`` in the shell: what a saved plan records of where it
was made, and the checks that it is applied there, as it was made, or not at all."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.app import output, sources, wiring
from controller.app.options import Format, Options, Target
from controller.app.output import deleted_models
from controller.core.errors import InvalidInput

if TYPE_CHECKING:
    from controller.core.plan.saved import SavedPlan
    from controller.engine.reconcile import Result

__all__ = ["apply_file", "is_saved_plan", "save_plan"]


def is_saved_plan(path: Path) -> bool:
    """``apply``'s PATH is a saved plan: a regular ``.json`` file that is not a JSON manifest
    (one with an Agent's or ServingDefaults' ``kind``), or another non-YAML file holding a saved
    plan's JSON."""
    if not path.is_file() or path.suffix in (".yaml", ".yml"):
        return False
    with path.open("rb") as fh:
        head = fh.read(64).lstrip()
    if path.suffix != ".json" and not head.startswith(b"{"):
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return path.suffix == ".json"  # a broken plan file: say so, as a plan file
    if (
        isinstance(data, dict)
        and "apiVersion" in data
        and data.get("kind") != "agentctl-saved-plan"
    ):
        return False  # a manifest written as JSON
    return path.suffix == ".json" or (isinstance(data, dict) and "format_version" in data)


def save_plan(out: Path, result: Result, path: Path, opts: Options) -> None:
    """The plan, the fingerprints of what it was made from, and where it was made."""
    from controller.engine.saved import save, write_saved

    if result.plan.has_errors or result.made is None:
        output.err(f"No plan was saved to {out}: the plan has errors.")
        return
    saved = save(
        result.plan, result.made, path=path, allow_empty=opts.allow_empty,
        target=opts.target.value, owner=opts.owner, prune=opts.prune,
        tracking_uri=wiring.registry_identity(opts.tracking_uri), cluster=_cluster(opts),
    )  # fmt: skip
    write_saved(out, saved)
    doomed = deleted_models(result.plan)
    if doomed:
        n = len(doomed)
        output.err(
            f"The plan saved to {out} deletes {n} registered model{'s' if n > 1 else ''} "
            f"({', '.join(doomed)}) with every version; `agentctl apply {out}` will not ask "
            "again: the saved plan is the consent."
        )


def apply_file(file: Path, fmt: Format, opts: Options) -> None:
    """Exactly the saved plan, against the registry, target and cluster it was made for, unless
    what it was made from changed since (a stale plan) or the file was edited: exit 1, nothing
    written."""
    from controller.adapters.git.history import GitHistory
    from controller.core.plan.kube_objects import settings_of
    from controller.core.render.formats import render_changeset, render_json
    from controller.engine.loader import load
    from controller.engine.saved import apply_saved, read_saved

    saved = read_saved(file)
    env = saved.plan.environment
    if "environment" in opts.given and opts.environment != env:
        raise InvalidInput.of(
            f"{file} was planned for environment {env or '(none)'}; a saved plan is applied as "
            "it was made: drop --env, or plan again with it",
            field="--env",
        )
    m = saved.manifests
    desired, _ = load(
        Path(m.path), root=Path(m.root), allow_empty=m.allow_empty, history=GitHistory()
    )
    opts = replace(opts, environment=env)
    desired = sources.in_env(sources.with_server(desired), opts)
    opts = sources.env_options(desired, opts)
    _check_where(file, saved, opts)
    opts = replace(opts, target=Target(saved.target), namespace=opts.namespace or saved.namespace)
    if saved.made.cluster is not None and _cluster(opts) != saved.made.cluster:
        raise InvalidInput.of(
            f"{file} was planned against the Kubernetes API server {saved.made.cluster}; the "
            f"kubeconfig points at {_cluster(opts)}: nothing was applied",
            field="--context",
        )
    backends = wiring.backends(opts, settings_of(desired))
    changeset = apply_saved(
        saved, desired, backends, file=str(file), workers=opts.parallelism,
        on_entry=output.show_entry if fmt is Format.text else None,
        guard=wiring.lock(opts, backends.registry),
    )  # fmt: skip
    if fmt is Format.json:
        payload = {"plan": saved.plan.to_dict(), "changeset": changeset.to_dict()}
        typer.echo(render_json(payload))
    else:
        typer.echo(render_changeset(changeset).splitlines()[-1])
    if output.failed_evaluations(saved.plan, changeset):
        raise typer.Exit(1)


def _check_where(file: Path, saved: SavedPlan, opts: Options) -> None:
    """The registry must be the one the plan was made against, and a flag given must not ask
    for something else than the plan was made with (the plan's own settings apply)."""
    here = wiring.registry_identity(opts.tracking_uri)
    if here != saved.made.tracking_uri:
        raise InvalidInput.of(
            f"{file} was planned against the registry at {saved.made.tracking_uri}; this apply "
            f"points at {here}: nothing was applied",
            field="--tracking-uri",
        )
    made = {
        "target": Target(saved.target), "owner": saved.made.owner, "prune": saved.made.prune,
        "root": Path(saved.manifests.root), "allow_empty": saved.manifests.allow_empty,
    }  # fmt: skip
    for name, value in made.items():
        given = getattr(opts, name)
        if (
            name in opts.given
            and given != value
            and not (name == "root" and Path(given).resolve() == value)
        ):
            flag = "--" + name.replace("_", "-")
            raise InvalidInput.of(
                f"{file} was planned with {flag} {value}; a saved plan is applied as it was "
                f"made: drop {flag}, or plan again with it",
                field=flag,
            )


def _cluster(opts: Options) -> str | None:
    """The Kubernetes API server of ``--target kubernetes``."""
    if opts.target is not Target.kubernetes:
        return None
    api, _ = wiring.kube_api(opts)
    return str(api.api_client.configuration.host)
